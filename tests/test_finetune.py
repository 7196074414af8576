import math

import pytest
import torch

from edit_retention.finetune import FinetuneArgs, finetune
from edit_retention.tasks import pack_blocks
from edit_retention.io import TIMING_KEYS, InputError

TEXTS = [f"Passage number {i} talks about rivers, clocks and the weather in spring." * 3 for i in range(40)]


def test_pack_blocks_shape_and_eos(tiny_model):
    _, tok = tiny_model
    blocks = pack_blocks(tok, TEXTS[:5], 16)
    assert blocks.shape[1] == 16 and blocks.shape[0] >= 5
    assert (blocks == tok.eos_token_id).any()
    with pytest.raises(InputError, match="fewer than one block"):
        pack_blocks(tok, ["hi"], 4096)


def test_finetune_lowers_loss_and_freezes_layers(tiny_model):
    model, tok = tiny_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = FinetuneArgs(steps=6, lr=3e-3, batch_size=4, seq_len=32, warmup_steps=1, eval_blocks=4)
    log = finetune(model, tok, TEXTS, TEXTS[:8], args, seed=0, frozen_layers=[1])
    assert log["eval_loss"] < log["eval_loss_before"]
    assert math.isclose(log["eval_perplexity"], math.exp(log["eval_loss"]))
    assert log["n_frozen_params"] > 0
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if n.startswith("model.layers.1."):
            assert not changed, n
        elif n.startswith("model.layers.2.mlp"):
            assert changed, n
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_is_deterministic_for_a_seed(tiny_model_dir):
    from edit_retention.models import load_model
    args = FinetuneArgs(steps=2, lr=1e-3, batch_size=2, seq_len=16, warmup_steps=1, eval_blocks=2)
    logs = []
    for _ in range(2):
        m, t = load_model(tiny_model_dir)
        logs.append(finetune(m, t, TEXTS, TEXTS[:4], args, seed=3)["train_loss"])
    assert logs[0] == logs[1]


def test_fused_adamw_makes_the_update_of_the_per_parameter_loop(tiny_model_dir, monkeypatch):
    """The fused AdamW kernel is a speed change only: after 5 steps (weight decay on) every
    weight equals the unfused optimiser's to float32 rounding, and the weights did move."""
    import edit_retention.finetune as F
    from edit_retention.models import load_model
    args = FinetuneArgs(steps=5, lr=3e-3, batch_size=2, seq_len=16, warmup_steps=1, eval_blocks=2, weight_decay=0.01)
    weights = {}
    for fused in (True, False):
        monkeypatch.setattr(F, "FUSED_ADAM", fused)
        m, t = load_model(tiny_model_dir)
        start = {n: p.detach().clone() for n, p in m.named_parameters()}
        finetune(m, t, TEXTS, TEXTS[:4], args, seed=1, progress=False)
        weights[fused] = {n: p.detach().clone() for n, p in m.named_parameters()}
    moved = max((weights[True][n] - start[n]).abs().max().item() for n in start)
    gap = max((weights[True][n] - weights[False][n]).abs().max().item() for n in start)
    assert moved > 1e-3 and gap < 1e-5, (moved, gap)


def test_finetune_nan_loss_stops_with_message(tiny_model):
    model, tok = tiny_model
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    args = FinetuneArgs(steps=2, batch_size=2, seq_len=16, eval_blocks=2)
    with pytest.raises(FloatingPointError, match="diverged"):
        finetune(model, tok, TEXTS, TEXTS[:4], args, seed=0)


def test_args_reject_unknown_key_and_wrong_type():
    with pytest.raises(InputError, match="unknown key 'stepz'"):
        FinetuneArgs.from_dict({"stepz": 3}, where="tasks.text.params")
    with pytest.raises(InputError, match="'lr' must be float"):
        FinetuneArgs.from_dict({"lr": "fast"})
    assert FinetuneArgs.from_dict({"lr": 1}).lr == 1.0


# ---------------------------------------------------------------- methods, freezing, checkpoints

from edit_retention.finetune import MethodSpec  # noqa: E402
from edit_retention.freezing import resolve_freeze  # noqa: E402

ARGS = dict(steps=3, lr=3e-3, batch_size=4, seq_len=32, warmup_steps=1, eval_blocks=4)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_lora_dora_train_adapters_and_merge_into_the_model(tiny_model, method):
    model, tok = tiny_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = MethodSpec.parse({"type": method, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    log = finetune(model, tok, TEXTS, TEXTS[:8], FinetuneArgs(**ARGS), seed=0, frozen_layers=[1], method=spec)
    assert log["method"]["type"] == method and 0 < log["n_trainable_params"] < 100_000
    assert type(model).__name__ == "LlamaForCausalLM" and not any("lora" in n for n, _ in model.named_parameters())
    assert set(before) == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if n.startswith("model.layers.2.self_attn.q_proj") or n.startswith("model.layers.0.self_attn.v_proj"):
            assert changed, n
        elif ("q_proj" not in n and "v_proj" not in n) or n.startswith("model.layers.1."):
            assert not changed, n   # untouched modules and the frozen block keep their weights
    assert all(p.requires_grad for p in model.parameters())
    assert log["eval_loss"] < log["eval_loss_before"]


def test_lora_target_module_the_model_lacks_is_named(tiny_model):
    model, tok = tiny_model
    spec = MethodSpec.parse({"type": "lora", "target_modules": ["q_proj", "c_attn"]})
    with pytest.raises(InputError, match="no linear module 'c_attn'"):
        finetune(model, tok, TEXTS, TEXTS[:8], FinetuneArgs(**ARGS), seed=0, method=spec)
    with pytest.raises(InputError, match="unknown fine-tuning method 'qlora'"):
        MethodSpec.parse("qlora")
    with pytest.raises(InputError, match="unknown key"):
        MethodSpec.parse({"type": "lora", "rank": 4})


def test_freezing_strategies():
    assert resolve_freeze("none", None, 4) == ([], False)
    assert resolve_freeze("edited", [2], 4) == ([2], False)
    assert resolve_freeze("non_edited", [2], 4) == ([2], False)      # alias: train only the non-edited layers
    assert resolve_freeze("only_edited", [2], 4) == ([0, 1, 3], True)
    assert resolve_freeze("layers:0-1,3", None, 4) == ([0, 1, 3], False)
    with pytest.raises(InputError, match="layer 4 is outside the model"):
        resolve_freeze("layers:2-4", None, 4)
    with pytest.raises(InputError, match="needs an edit"):
        resolve_freeze("only_edited", None, 4)
    with pytest.raises(InputError, match="the edit's layer 9 is outside"):
        resolve_freeze("edited", [9], 4)
    with pytest.raises(InputError, match="unknown freezing strategy 'top'"):
        resolve_freeze("top", [1], 4)


def test_reference_block_ranges_are_one_line_each():
    """The reference code trains one contiguous block range; embeddings and the final norm
    always train (second value False)."""
    assert resolve_freeze("above_edited", [1], 4) == ([0, 1], False)      # trains blocks 2..3
    assert resolve_freeze("below_edited", [1, 2], 4) == ([1, 2, 3], False)  # trains block 0
    assert resolve_freeze("train:2-end", None, 4) == ([0, 1], False)
    assert resolve_freeze("train:0-1", None, 4) == ([2, 3], False)
    with pytest.raises(InputError, match="names no block range"):
        resolve_freeze("train:3-5", None, 4)
    with pytest.raises(InputError, match="train:A-end"):
        resolve_freeze("train:end", None, 4)


def test_only_edited_trains_only_the_edited_block(tiny_model):
    model, tok = tiny_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen, non_layer = resolve_freeze("only_edited", [2], 4)
    finetune(model, tok, TEXTS, TEXTS[:8], FinetuneArgs(**ARGS), seed=0, frozen_layers=frozen,
             freeze_non_layer=non_layer, progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and all(n.startswith("model.layers.2.") for n in changed)


def test_checkpoints_run_at_every_n_steps_but_the_last(tiny_model):
    model, tok = tiny_model
    args = FinetuneArgs(**{**ARGS, "steps": 5, "checkpoint_every": 2})
    assert args.checkpoint_steps() == [2, 4]
    seen = []
    log = finetune(model, tok, TEXTS, TEXTS[:8], args, seed=0, progress=False,
                   on_checkpoint=lambda step, net: seen.append((step, net.training)))
    assert seen == [(2, False), (4, False)] and log["checkpoint_steps"] == [2, 4]
    assert FinetuneArgs(steps=4, checkpoint_every=4).checkpoint_steps() == []


def test_listed_checkpoints_run_at_those_steps_as_well(tiny_model):
    model, tok = tiny_model
    args = FinetuneArgs.from_dict({**ARGS, "steps": 9, "checkpoint_every": 4, "checkpoints": [5, 1, 2, 1]})
    assert args.checkpoint_steps() == [1, 2, 4, 5, 8]
    seen = []
    log = finetune(model, tok, TEXTS, TEXTS[:8], args, seed=0, progress=False,
                   on_checkpoint=lambda step, net: seen.append(step))
    assert seen == [1, 2, 4, 5, 8] and log["checkpoint_steps"] == [1, 2, 4, 5, 8]
    for bad, says in (([0, 2], "steps > 0"), ("10", "steps > 0"), ([2, 9], r"\[9\] at or after the last step \(9\)")):
        with pytest.raises(InputError, match=says):
            FinetuneArgs.from_dict({"steps": 9, "checkpoints": bad}, "tasks.text.params")


def test_cli_finetune_writes_flat_metrics_and_checkpoint_scores(tiny_model_dir, tmp_path):
    import json

    from edit_retention.cli import main
    from edit_retention.io import read_jsonl
    from conftest import finetune_stage_inputs

    common = ["finetune", *finetune_stage_inputs(tmp_path, tiny_model_dir, TEXTS, "{} is a place whose capital is"),
              "--out-model", str(tmp_path / "model"), "--out-metrics", str(tmp_path / "m.json"),
              "--out-log", str(tmp_path / "log.json"), "--out-steps", str(tmp_path / "steps")]
    params = json.dumps({**ARGS, "steps": 4, "checkpoint_every": 2})
    assert main(common + ["--params", params, "--method", "lora", "--freeze", "layers:0"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values()) and "task_score" in metrics
    assert json.loads((tmp_path / "steps/index.json").read_text()) == {"steps": [2]}
    rows = read_jsonl(tmp_path / "steps/step-2.jsonl")
    assert {r["knowledge"] for r in rows} == {"edited", "intrinsic"} and all("lp_target" in r for r in rows)
    assert (tmp_path / "model/config.json").exists()
    train_log = json.loads((tmp_path / "log.json").read_text())    # no wall-clock time in an artifact
    assert train_log["train_loss"] and not TIMING_KEYS & set(train_log)
    # strategies that need the edit's log fail clearly without one
    assert main(common + ["--params", params, "--freeze", "only_edited"]) == 2
    assert main(common + ["--params", params, "--freeze", "layers:0-7"]) == 2


def test_bf16_precision_trains_under_autocast_with_float32_weights(tiny_model_dir, monkeypatch):
    """precision=bf16: the training forward runs under bfloat16 autocast (seen inside the
    model), the loss still falls, the weights stay float32, and the losses differ from fp32
    only by rounding."""
    from edit_retention.models import load_model
    seen = []
    losses = {}
    for precision in ("fp32", "bf16"):
        m, t = load_model(tiny_model_dir)
        h = m.model.layers[0].mlp.down_proj.register_forward_hook(
            lambda _m, _i, out, p=precision: seen.append((p, out.dtype)) if _m.training else None)
        args = FinetuneArgs(steps=6, lr=3e-3, batch_size=4, seq_len=32, warmup_steps=1, eval_blocks=4,
                            precision=precision)
        log = finetune(m, t, TEXTS, TEXTS[:8], args, seed=0)
        h.remove()
        assert log["eval_loss"] < log["eval_loss_before"]
        assert all(p.dtype == torch.float32 for p in m.parameters())
        losses[precision] = log["train_loss"]
    assert {d for p, d in seen if p == "bf16"} == {torch.bfloat16}
    assert {d for p, d in seen if p == "fp32"} == {torch.float32}
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_unknown_precision_is_an_error():
    with pytest.raises(InputError, match="precision.*fp32, bf16.*'fp16'"):
        FinetuneArgs.from_dict({"precision": "fp16"}, where="tasks.text.params")


def test_schedules_linear_without_warmup_and_constant():
    from edit_retention.finetune import _schedule
    lin = _schedule(FinetuneArgs(steps=10, warmup_steps=0))
    assert [round(lin(s), 2) for s in (0, 5, 9)] == [1.0, 0.5, 0.1]   # the reference's linear decay, no warm-up
    const = _schedule(FinetuneArgs(steps=10, warmup_steps=2, schedule="constant"))
    assert [const(s) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(InputError, match="'schedule' must be one of linear, constant"):
        FinetuneArgs.from_dict({"schedule": "cosine"})
    with pytest.raises(InputError, match="'stop_eval_loss' needs 'eval_every' > 0"):
        FinetuneArgs.from_dict({"stop_eval_loss": 3.0})


@pytest.mark.parametrize("threshold, stops", [(1e9, True), (1e-9, False)])
def test_eval_loss_stop_ends_training_and_later_checkpoints_see_the_stopped_model(tiny_model, threshold, stops):
    model, tok = tiny_model
    args = FinetuneArgs(steps=6, lr=3e-3, batch_size=4, seq_len=32, warmup_steps=0, eval_blocks=4,
                        checkpoint_every=2, stop_eval_loss=threshold, eval_every=2)
    seen = {}
    log = finetune(model, tok, TEXTS, TEXTS[:8], args, seed=0, progress=False,
                   on_checkpoint=lambda s, net: seen.__setitem__(s, {n: p.detach().clone() for n, p in net.named_parameters()}))
    assert sorted(seen) == [2, 4]                         # checkpoints are scored either way
    if stops:                                             # any loss is below 1e9: stop after the first check
        assert log["stopped_at_step"] == 2 and len(log["train_loss"]) == 2
        assert [s for s, _ in log["stop_eval_losses"]] == [2]
        assert all(torch.equal(seen[2][n], seen[4][n]) for n in seen[2])
        assert all(torch.equal(seen[4][n], p) for n, p in model.named_parameters())
    else:
        assert log["stopped_at_step"] is None and len(log["train_loss"]) == 6
        assert [s for s, _ in log["stop_eval_losses"]] == [2, 4, 6]
        assert not all(torch.equal(seen[2][n], seen[4][n]) for n in seen[2])
