"""The study plans ONE layer_stats job per (model, corpus, facts), for the union of the layers
its grid's editors read on that model, and each edit reads its own layers' files from it
(issue 16 item 2). Snakemake dry runs only (-n): nothing is built."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STATS = "data/stats/{}/pydocs/builtin"


def jobs(tmp_path, overlay: dict, *targets: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "overlay.yaml"
    cfg.write_text(yaml.safe_dump(overlay))
    exe = Path(sys.executable).parent / "snakemake"
    return subprocess.run([str(exe), "-n", "-p", "--forceall", "--cores", "1", *targets, "--configfile", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True)


def blocks(out: str, rule: str) -> list[str]:
    return [b for b in re.split(r"\n(?=(?:local)?rule \w+:)", out) if re.match(rf"(?:local)?rule {rule}:", b)]


def test_one_stats_job_per_model_with_every_layer_its_editors_read(tmp_path):
    smoke = yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text())
    r = jobs(tmp_path, {"models": {"tiny-llama": smoke["models"]["tiny-llama"]},
                        "grid": {"models": ["smollm2-135m", "tiny-llama"], "editors": ["memit", "rome"],
                                 "remedies": ["none", "paraphrase"]}})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    stats = {re.search(r"wildcards: model=([\w.-]+)", b).group(1): b for b in blocks(r.stdout, "layer_stats")}
    assert sorted(stats) == ["smollm2-135m", "tiny-llama"]          # one job per model, not per layer
    assert "--layers 3 4 5 6 7 " in stats["smollm2-135m"]              # MEMIT's 3-7, ROME's 5 among them
    assert "--layers 0 1 " in stats["tiny-llama"]                      # its own set: MEMIT 0-1, ROME 1
    for model, block in stats.items():
        assert f"--out-dir {STATS.format(model)} " in block
    edits = blocks(r.stdout, "apply_edits")
    assert len(edits) == 8                                          # 2 models x 2 editors x k 0, 3
    for b in edits:
        model, editor = re.search(r"wildcards: model=([\w.-]+), facts=builtin, editor=(\w+)", b).groups()
        layers = {("smollm2-135m", "memit"): [3, 4, 5, 6, 7], ("smollm2-135m", "rome"): [5],
                  ("tiny-llama", "memit"): [0, 1], ("tiny-llama", "rome"): [1]}[model, editor]
        files = " ".join(f"{STATS.format(model)}/layer{l}.safetensors" for l in layers)
        assert f"--stats {files} --out " in b, b
        assert re.search(rf"input: .*\b{re.escape(STATS.format(model))}\n", b), b   # waits for its stats job


def test_an_edit_outside_the_grid_names_the_missing_layers(tmp_path):
    r = jobs(tmp_path, {"grid": {"editors": ["rome"]}}, "data/edits/smollm2-135m/builtin/memit/k0")
    assert r.returncode != 0
    assert "editor memit on model smollm2-135m reads statistics of layers [3, 4, 6, 7]" in r.stdout + r.stderr
