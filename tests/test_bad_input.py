"""Issue 14: bad input, end to end through Snakemake on the smoke study, one row per class.

Each row is what a user would type wrong (a config overlay merged after smoke.yaml, or a
damaged file), where the run must stop (``parse``: before any job; ``job``: inside the job
that reads it, whose old outputs are then put back), the words the message must hold, and
the check every row shares: every file under ``data/`` built before the run is still there,
byte for byte. The message words of many more cases are tested in-process in
tests/test_config.py; this table proves the stop point and the artifacts.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["data/models/tiny-llama/base", "data/facts/builtin-small/paraphrases.jsonl",
           "data/corpus/pydocs-small/builtin-small/train.jsonl"]
SMOKE = "workflow/config/smoke.yaml"
MINE = "data/facts/mine/records.jsonl"   # the job that reads the fact file of the rows that set one


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A checkout with the smoke study's model, facts, paraphrases and corpus built."""
    d = tmp_path_factory.mktemp("study")
    for name in ("Snakefile", "workflow", "profiles", "params.yaml", "src", "sources"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, d / name)
    r = subprocess.run(["snakemake", "--cores", "1", *TARGETS, "--configfile", SMOKE], cwd=d, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (d / "not_a_model").mkdir()
    (d / "latin1.jsonl").write_bytes('{"subject": "Z\xfcrich"}\n'.encode("latin-1"))
    (d / "broken.jsonl").write_text('{"case_id": 1}\n{"case_id": 2,\n')
    return d


def _data(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted((d / "data").rglob("*")) if p.is_file()}


def _truncate(d: Path, rel: str) -> None:
    p = d / rel
    p.write_bytes(p.read_bytes()[:40])


# (id, overlay merged after smoke.yaml, or a damage done to a built file first, extra args,
#  where it stops, words the output must contain)
CASES = [
    # 1. silent corruption: a name twice in the grid
    ("remedy twice", {"grid": {"remedies": ["none", "none", "lora"]}}, None, [], "parse",
     ["override.yaml", "grid.remedies lists ['none'] more than once"]),
    ("seed twice", {"grid": {"seeds": [0, 0]}}, None, [], "parse", ["grid.seeds lists ['0'] more than once"]),
    # 2. source keys
    ("model config typo", {"models": {"tiny-llama": {"source": {"config": {"hiden_size": 64}}}}}, None, [], "parse",
     ["models.tiny-llama.source.config: unknown key 'hiden_size'", "did you mean 'hidden_size'"]),
    ("model source typo", {"models": {"tiny-llama": {"source": {"revison": "main"}}}}, None, [], "parse",
     ["models.tiny-llama.source: unknown key 'revison'"]),
    ("fact source type typo", {"facts": {"builtin-small": {"source": {"type": "bultin"}}}}, None, [], "parse",
     ["facts.builtin-small.source.type"]),
    # 3. ranges
    ("lr 0", {"tasks": {"text": {"params": {"lr": 0}}}}, None, [], "parse", ["tasks.text.params: key 'lr' must be > 0"]),
    ("steps 0", {"tasks": {"text": {"params": {"steps": 0}}}}, None, [], "parse", ["key 'steps' must be > 0"]),
    ("lr < 0", {"tasks": {"text": {"params": {"lr": -1.0e-4}}}}, None, [], "parse", ["tasks.text.params", "'lr'"]),
    ("batch size 0", {"tasks": {"text": {"params": {"batch_size": 0}}}}, None, [], "parse",
     ["key 'batch_size' must be > 0"]),
    # 4. what can be known before any job
    ("model path", {"models": {"local": {"source": {"type": "hf", "id": "./nowhere"}}},
                    "grid": {"models": ["local"]}}, None, [], "parse", ["models.local.source.id: no model folder"]),
    ("not a model folder", {"models": {"local": {"source": {"type": "hf", "id": "not_a_model"}}},
                            "grid": {"models": ["local"]}}, None, [], "parse", ["is not a model folder"]),
    ("layer -1", {"editors": {"rome": {"layer": -1}}}, None, [], "parse",
     ["editors.rome.layer: layer -1 is outside model 'tiny-llama'"]),
    ("freeze range", {"remedies": {"freeze": {"freeze": "layers:0-99"}}}, None, [], "parse",
     ["remedies.freeze.freeze", "is outside the model"]),
    # ... and what only a job can find: the job fails, its old outputs are put back
    ("corpus too small", {"corpora": {"pydocs-small": {"n_train": 100000}}}, None, [], "job",
     ["n_train + n_eval = 100016 were asked for", "restored 3 output(s)"]),
    ("paraphrase n_eval", {"paraphrase": {"n_eval": 40}}, None, [], "job", ["40 are needed", "restored 1 output(s)"]),
    # 5. one short message: unknown key, a oneOf, a file that is not YAML
    ("unknown key", {"colour": "blue"}, None, [], "parse", ["override.yaml", "unknown key 'colour'"]),
    ("lora key", {"remedies": {"lora": {"method": {"target_module": ["q_proj"]}}}}, None, [], "parse",
     ["remedies.lora.method: unknown key 'target_module'; did you mean 'target_modules'?"]),
    # Snakemake reads --configfile before the workflow's code runs, and its message names no
    # file; `python -m edit_retention check-config FILE` names file and line (README).
    ("not yaml", "models: [unclosed\n", None, [], "parse", ["Config file is not valid JSON or YAML"]),
    # 6. files: not UTF-8, not JSON (stop before any job: the workflow's onstart)
    ("latin-1 fact file", {"facts": {"mine": {"source": {"type": "jsonl", "path": "latin1.jsonl"}}},
                           "grid": {"facts": "mine"}}, None, [MINE], "parse",
     ["facts.mine.source: latin1.jsonl: line 1 is not valid UTF-8"]),
    ("fact file not json", {"facts": {"mine": {"source": {"type": "jsonl", "path": "broken.jsonl"}}},
                            "grid": {"facts": "mine"}}, None, [MINE], "parse",
     ["override.yaml", "facts.mine.source: broken.jsonl: line 2 is not valid JSON"]),
    ("missing fact file", {"facts": {"mine": {"source": {"type": "jsonl", "path": "no_such.jsonl"}}},
                           "grid": {"facts": "mine"}}, None, [MINE], "parse", ["no_such.jsonl"]),
    # 7. damaged artifacts: named with the command that rebuilds them
    ("truncated records", None, "data/facts/builtin-small/records.jsonl", ["--forcerun", "generate_paraphrases"],
     "job", ["records.jsonl: damaged or changed since its job wrote it",
             "--forcerun data/facts/builtin-small/records.jsonl"]),
]


@pytest.mark.parametrize("overlay, damage, extra, stage, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_stops_where_it_must_and_keeps_every_built_file(built, overlay, damage, extra, stage, words):
    d = built
    saved = {}
    if damage:
        saved[damage] = (d / damage).read_bytes()
        _truncate(d, damage)
    before = _data(d)
    args = ["snakemake", "--cores", "1", *TARGETS, *extra, "--configfile", SMOKE]
    if overlay is not None:
        (d / "override.yaml").write_text(overlay if isinstance(overlay, str) else yaml.safe_dump(overlay))
        args.append("override.yaml")
    try:
        r = subprocess.run(args, cwd=d, env=_env(), capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out[-3000:]
        for w in words:
            assert w in out, f"{w!r} not in:\n{out[-3000:]}"
        ran = "Select jobs to execute" in out
        assert ran == (stage == "job"), f"expected to stop at {stage}:\n{out[-3000:]}"
        assert _data(d) == before
    finally:
        for rel, data in saved.items():
            (d / rel).write_bytes(data)
    assert not (d / ".snakemake/kept_outputs").exists()
