"""Fine-tuning in 2 processes (torchrun, gloo on CPU) matches 1 process on the same global batch.

Tolerance (fp32): the 2-process run sums the same per-token losses in another order (each
rank's slice, then the all-reduce), so losses and weights differ by float rounding only:
train losses within 1e-5 relative, every weight within 1e-5 absolute (AdamW's step is lr-sized,
so a rounding difference in the gradient moves a weight by at most ~lr * 1e-3 here), and the
scores of the fine-tuned model (log-probabilities of the facts) within 1e-4.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import finetune_stage_inputs
from edit_retention.cli import main
from edit_retention.io import read_jsonl
from edit_retention.launch import launch_command
from edit_retention.ranks import Solo, digest

TEXTS = [f"Passage number {i} talks about rivers, clocks and the weather in spring." * 3 for i in range(40)]
PARAMS = dict(steps=4, lr=1e-3, batch_size=4, seq_len=16, warmup_steps=1, eval_blocks=4, checkpoint_every=2)
SRC = Path(__file__).resolve().parents[1] / "src"
# scripts/setup.sh installs the optional DeepSpeed here, off the default path (requirements-deepspeed.txt)
DEEPSPEED_SITE = SRC.parent / ".deepspeed"


def _inputs(tmp_path: Path, model_dir) -> list[str]:
    return finetune_stage_inputs(tmp_path, model_dir, TEXTS, "{} has its capital in") + [
        "--params", json.dumps(PARAMS), "--seed", "1", "--generation-tokens", "0"]


def _outputs(d: Path) -> list[str]:
    return ["--out-model", str(d / "model"), "--out-metrics", str(d / "m.json"), "--out-log", str(d / "log.json"),
            "--out-steps", str(d / "steps")]


def _torchrun(args: list[str], n: int = 2, strategy: str = "ddp") -> subprocess.CompletedProcess:
    path = [str(SRC)] + ([str(DEEPSPEED_SITE)] if strategy == "deepspeed" else []) + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    cmd = launch_command({"processes": n, "strategy": strategy}).split() + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed"])
def test_two_processes_match_one_on_losses_weights_and_scores(tiny_model_dir, tmp_path, strategy):
    """DDP (whole model per rank), FSDP and DeepSpeed ZeRO-3 (each rank 1/2 of the weights and
    their optimiser state; the checkpoint and final scores and the saved weights gathered from
    the shards) all give the 1-process run's training. DeepSpeed is an optional install
    (requirements-deepspeed.txt, which scripts/setup.sh installs into .deepspeed/)."""
    if strategy == "deepspeed" and not (DEEPSPEED_SITE / "deepspeed").is_dir():
        pytest.skip(f"DeepSpeed is not in {DEEPSPEED_SITE} (scripts/setup.sh installs it there)")
    common = ["finetune"] + _inputs(tmp_path, tiny_model_dir)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert main(common + _outputs(one)) == 0
    run = _torchrun(common + _outputs(two), strategy=strategy)
    assert run.returncode == 0, run.stderr[-3000:]
    log1, log2 = (json.loads((d / "log.json").read_text()) for d in (one, two))
    assert log2["processes"] == 2 and "processes" not in log1          # a 1-process log is unchanged
    assert log2["strategy"] == strategy and log2["n_trainable_params"] == log1["n_trainable_params"]
    held = log2["trainable_params_per_rank"] / log2["n_trainable_params"]
    assert held == 1 if strategy == "ddp" else 0.45 < held < 0.55     # FSDP, ZeRO-3: each rank holds half
    assert log2["train_loss"] == pytest.approx(log1["train_loss"], rel=1e-5)
    assert log2["train_tokens"] == log1["train_tokens"] and log2["train_tokens"] > 0
    assert log1["train_loss"][0] != pytest.approx(log1["train_loss"][-1], rel=1e-3)   # it trained
    w1, w2 = (load_file(d / "model/model.safetensors") for d in (one, two))
    assert w1.keys() == w2.keys()
    start = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert any(not torch.equal(w1[k], start[k]) for k in w1)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    m1, m2 = (json.loads((d / "m.json").read_text()) for d in (one, two))
    assert m2 == pytest.approx(m1, rel=1e-5)
    for d in (one, two):        # checkpoint scores: rank 0 alone wrote them, once
        assert json.loads((d / "steps/index.json").read_text()) == {"steps": [2]}
    s1, s2 = (read_jsonl(d / "steps/step-2.jsonl") for d in (one, two))
    assert len(s1) == len(s2) > 0
    for a, b in zip(s1, s2):
        assert a["lp_target"] == pytest.approx(b["lp_target"], abs=1e-4)
    assert not list(two.glob(".steps.*"))


def test_ranks_that_disagree_on_the_data_order_stop_with_a_clear_error(tmp_path):
    script = tmp_path / "disagree.py"
    script.write_text("import os\nfrom edit_retention.ranks import make_ranks\n"
                      "make_ranks('cpu').check_same('the batch order', 'order-' + os.environ['RANK'])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    run = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", str(script)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "the 2 processes disagree on the batch order" in run.stderr and "order-0" in run.stderr


def test_one_process_is_the_plain_path():
    solo = Solo()
    idx = torch.arange(6)
    assert solo.shard(idx) is idx and solo.sum(2.5) == 2.5 and solo.on_main(lambda: 7) == 7
    assert launch_command({}) == launch_command({"processes": 1}) == "python -m edit_retention"
    assert launch_command({"processes": 2}) == "torchrun --standalone --nproc_per_node 2 -m edit_retention"
    assert launch_command({"processes": 2, "strategy": "fsdp"}).startswith("env EDIT_RETENTION_STRATEGY=fsdp torchrun ")
    assert "--multi_gpu --num_processes 4" in launch_command({"processes": 4, "launcher": "accelerate"})
    assert digest(idx) == digest(torch.arange(6)) != digest(torch.arange(6).flip(0))
    assert sys.executable


def test_launch_setting_is_checked_against_the_regime_and_batch_sizes():
    import copy

    import yaml

    from conftest import deep_merge
    from edit_retention.config import check_study
    from edit_retention.io import InputError

    root = Path(__file__).resolve().parents[1]
    load = lambda name: yaml.safe_load((root / name).read_text())  # noqa: E731
    smoke = deep_merge(load("params.yaml"), load("workflow/config/smoke.yaml"))
    two = deep_merge(smoke, load("workflow/config/two_processes.yaml"))
    check_study(copy.deepcopy(two), where="two")
    assert two["launch"]["processes"] == 2
    odd = copy.deepcopy(two)
    odd["tasks"][odd["grid"]["tasks"][0]]["params"]["batch_size"] = 3
    with pytest.raises(InputError, match="batch_size 3 does not split evenly"):
        check_study(odd, where="two")
    single = deep_merge(load("params.yaml"), {"launch": {"processes": 2}, "edit": {"regime": "single"}})
    with pytest.raises(InputError, match="edit.regime single fine-tunes one model per fact"):
        check_study(single, where="two")
    default = load("params.yaml")
    check_study(default, where="params.yaml")
    assert default["launch"] == {"processes": 1, "launcher": "torchrun", "strategy": "ddp"}   # schema default
    fsdp = deep_merge(two, {"launch": {"strategy": "fsdp"}, "grid": {"remedies": ["none"]}})
    check_study(copy.deepcopy(fsdp), where="two")
    with pytest.raises(InputError, match="strategy fsdp shards over processes"):
        check_study(deep_merge(fsdp, {"launch": {"processes": 1}}), where="two")
    lora = deep_merge(fsdp, {"remedies": {"lora": {"paraphrase_k": 0, "freeze": "none", "method": {"type": "lora"}}},
                             "grid": {"remedies": ["lora"]}})
    with pytest.raises(InputError, match="remedy 'lora' uses lora"):
        check_study(lora, where="two")
    zero = deep_merge(fsdp, {"launch": {"strategy": "deepspeed"}})
    with pytest.raises(InputError, match="strategy deepspeed shards over processes"):
        check_study(deep_merge(zero, {"launch": {"processes": 1}}), where="two")
    with pytest.raises(InputError, match="strategy deepspeed shards full fine-tuning, but remedy 'lora'"):
        check_study(deep_merge(lora, {"launch": {"strategy": "deepspeed"}}), where="two")


def test_deepspeed_strategy_without_deepspeed_installed_is_refused_before_any_job(monkeypatch):
    import importlib.util

    import yaml

    from conftest import deep_merge
    from edit_retention.config import check_study
    from edit_retention.io import InputError

    root = Path(__file__).resolve().parents[1]
    load = lambda name: yaml.safe_load((root / name).read_text())  # noqa: E731
    zero = deep_merge(deep_merge(load("params.yaml"), load("workflow/config/smoke.yaml")),
                      deep_merge(load("workflow/config/two_processes.yaml"),
                                 {"launch": {"strategy": "deepspeed"}, "grid": {"remedies": ["none"]}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(InputError, match="launch.strategy deepspeed needs DeepSpeed, which is not installed here"):
        check_study(zero, where="two")
