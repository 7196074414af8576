"""Batch sizes that scale with memory: the pick, the budget, the out-of-memory back-off,
and fine-tuning's micro-batches giving the whole batch's update."""
import pytest
import torch

from edit_retention import memory
from edit_retention.finetune import FinetuneArgs, finetune
from edit_retention.io import InputError
from edit_retention.tasks import get_task

TEXTS = [f"Passage number {i} talks about rivers, clocks and the weather in spring." * 3 for i in range(40)]
# Instructions of different lengths: micro-batches then hold different numbers of
# predicted tokens, which is what the loss weighting has to get right.
INSTRUCTIONS = [{"instruction": "Name a colour" + " please" * (i % 5), "input": "",
                 "output": "Blue" + " and green" * (i % 3)} for i in range(24)]


@pytest.fixture(autouse=True)
def _job_memory():
    yield
    memory.set_job_memory(0)


def test_parse_batch_size():
    assert memory.parse_batch_size(8, "w") == 8
    assert memory.parse_batch_size("16", "w") == 16
    assert memory.parse_batch_size("auto", "w") == "auto"
    assert memory.parse_batch_size(0, "w", zero_ok=True) == 0
    for bad in (0, -2, 1.5, True, "big"):
        with pytest.raises(InputError, match=r"evaluate.batch_size: a batch size must be an integer >= 1 or \"auto\""):
            memory.parse_batch_size(bad, "evaluate.batch_size")


def test_pick_is_the_cap_or_the_largest_power_of_two_that_fits():
    # budget 100, fixed 20: room for 8 items of 10 bytes
    assert memory.pick_batch_size(100, 20, 10, cap=16) == 8
    assert memory.pick_batch_size(100, 20, 10, cap=5) == 5       # the cap fits: the cap itself
    assert memory.pick_batch_size(100, 30, 10, cap=64) == 4      # room 7 -> 4
    assert memory.pick_batch_size(100, 95, 10, cap=64) == 1      # nothing fits: try 1
    assert memory.pick_batch_size(10**12, 0, 10, cap=24) == 24


def test_budget_is_the_job_reservation_on_cpu_capped_by_the_machine():
    host = memory.host_memory()
    assert memory.budget_bytes("cpu", 0) == int(host * memory.FRACTION)
    assert memory.budget_bytes("cpu", 1000) == int(1000 * 2**20 * memory.FRACTION)
    assert memory.budget_bytes("cpu", 10**9) == int(host * memory.FRACTION)   # more than there is
    memory.set_job_memory(2000)
    assert memory.budget_bytes("cpu") == int(2000 * 2**20 * memory.FRACTION)
    with pytest.raises(InputError, match="--mem-mb must be >= 0"):
        memory.set_job_memory(-1)


def test_sequence_estimate_grows_with_length_and_training(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    est = lambda s, **kw: memory.sequence_bytes(cfg, s, **kw)  # noqa: E731
    assert est(64, train=True) > est(32, train=True) > est(32, train=False)
    assert est(64, train=True, precision="bf16") < est(64, train=True)
    assert est(64, train=False, logit_positions=3) < est(64, train=False)
    # a training sequence keeps every layer; an inference one holds a layer at a time
    L = cfg.num_hidden_layers
    blocks = lambda **kw: est(64, logit_positions=0, **kw)  # noqa: E731
    assert blocks(train=True) > L * blocks(train=False)

    class NoDims:
        pass
    with pytest.raises(InputError, match="set a numeric batch size instead of auto"):
        memory.sequence_bytes(NoDims(), 8, train=True)


def test_backoff_halves_until_it_fits_and_reraises_other_errors():
    calls, retries = [], []

    def fn(n):
        calls.append(n)
        if n > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return n * 10
    assert memory.with_backoff(fn, 16, "t", on_retry=retries.append) == (20, 2)
    assert calls == [16, 8, 4, 2] and retries == [8, 4, 2]

    def cpu_oom(n):
        calls.append(n)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    calls.clear()
    with pytest.raises(RuntimeError, match="can't allocate"):
        memory.with_backoff(cpu_oom, 4, "t")
    assert calls == [4, 2, 1]                      # then the error itself

    def broken(n):
        calls.append(n)
        raise RuntimeError("shape mismatch")
    calls.clear()
    with pytest.raises(RuntimeError, match="shape mismatch"):
        memory.with_backoff(broken, 8, "t")
    assert calls == [8]                            # not an OOM: no retry


def _run(model_dir, micro, task="instruction", steps=3, **kw):
    from edit_retention.models import load_model
    m, t = load_model(model_dir)
    data = INSTRUCTIONS if task == "instruction" else TEXTS
    args = FinetuneArgs(steps=steps, lr=3e-3, batch_size=6, seq_len=96 if task == "instruction" else 32,
                        warmup_steps=1, eval_blocks=4,
                        eval_examples=4, micro_batch_size=micro, **kw)
    log = finetune(m, t, data, data[:4], args, seed=0, task=get_task(task), progress=False)
    return log, {n: p.detach().clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("task", ["instruction", "causal_lm"])
def test_micro_batches_give_the_whole_batch_update(tiny_model_dir, task):
    whole, w_whole = _run(tiny_model_dir, 0, task)
    assert whole["micro_batch_size"] == 6 and whole["accumulation_steps"] == 1
    for micro in (1, 4):       # 4 does not divide 6: passes of 4 and 2 examples
        log, w = _run(tiny_model_dir, micro, task)
        assert log["micro_batch_size"] == micro and log["accumulation_steps"] == -(-6 // micro)
        assert log["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-5)
        assert log["train_tokens"] == whole["train_tokens"]
        for n in w:
            torch.testing.assert_close(w[n], w_whole[n], rtol=1e-4, atol=1e-5, msg=n)


def test_finetune_oom_halves_the_micro_batch_and_repeats_the_step(tiny_model_dir, monkeypatch):
    """A forward pass over more than 3 examples raises CUDA's out-of-memory error: the
    batch of 6 is redone in passes of 3, and the run equals micro_batch_size 3."""
    from transformers import LlamaForCausalLM
    real = LlamaForCausalLM.forward

    def forward(self, input_ids=None, **kw):
        if self.training and input_ids.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(self, input_ids=input_ids, **kw)
    monkeypatch.setattr(LlamaForCausalLM, "forward", forward)
    log, w = _run(tiny_model_dir, 0)
    assert log["micro_batch_size"] == 3 and log["accumulation_steps"] == 2
    monkeypatch.setattr(LlamaForCausalLM, "forward", real)
    ref, w_ref = _run(tiny_model_dir, 3)
    assert log["train_loss"] == ref["train_loss"]
    for n in w:
        assert torch.equal(w[n], w_ref[n]), n


def test_auto_micro_batch_follows_the_job_memory(tiny_model_dir):
    from edit_retention.models import load_model
    from edit_retention.finetune import resolve_micro_batch
    m, t = load_model(tiny_model_dir)
    task = get_task("instruction")
    args = FinetuneArgs(batch_size=6, seq_len=96, micro_batch_size="auto")
    train = task.train_tensors(t, INSTRUCTIONS, args)
    state = memory.train_state_bytes(m)
    per = memory.sequence_bytes(m.config, train["input_ids"].shape[1], train=True)
    # a reservation with room for 2.5 sequences beside the weights and optimiser state
    memory.set_job_memory(int((state + 2.5 * per) / memory.FRACTION / 2**20) + 1)
    assert resolve_micro_batch(m, train, args) == 2
    memory.set_job_memory(0)     # the whole machine: the batch fits in one pass
    assert resolve_micro_batch(m, train, args) == 6
    assert FinetuneArgs.from_dict({"micro_batch_size": "auto"}).micro_batch_size == "auto"
    with pytest.raises(InputError, match="tasks.t.params: key 'micro_batch_size'.*\"auto\", got 'half'"):
        FinetuneArgs.from_dict({"micro_batch_size": "half"}, where="tasks.t.params")


def test_backoff_chunks_cover_every_item_once_and_keep_the_smaller_size():
    seen = []

    def fn(start, n):
        if n > 3:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        seen.extend(range(start, start + n))
        return n
    chunks = [(s, n) for s, n, _ in memory.backoff_chunks(10, 8, fn, "t")]
    assert chunks == [(0, 2), (2, 2), (4, 2), (6, 2), (8, 2)]     # 8 and 4 fail, 2 from then on
    assert seen == list(range(10))
    assert [(s, n) for s, n, _ in memory.backoff_chunks(5, 3, fn, "t")] == [(0, 3), (3, 2)]


def _items():
    from conftest import make_record
    from edit_retention.evaluate import build_items
    para = {"augment": ["{}'s capital city is"], "evaluate": ["{} has its capital in", "The seat of government of {} is"]}
    recs = [make_record(i, subject=s, true=t, new=n) for i, (s, t, n) in enumerate(
        [("Freedonia", "Paris", "Rome"), ("Grand Fenwick", "Berlin", "Buenos Aires"), ("Ruritania", "Madrid", "Tokyo")])]
    return build_items(recs[:2], recs[2:], {r["case_id"]: para for r in recs})


def test_scoring_auto_and_oom_backoff_score_every_item_the_same(tiny_model, monkeypatch):
    from transformers import LlamaModel

    from edit_retention.evaluate import score_items
    model, tok = tiny_model
    items = _items()
    ref = score_items(model, tok, items, batch_size=len(items), progress=False)
    auto = score_items(model, tok, items, batch_size="auto", progress=False)
    real = LlamaModel.forward
    sizes = []

    def forward(self, input_ids=None, **kw):
        if kw.get("past_key_values") is None:   # the prompts' pass (prompt run once), or a full pass
            sizes.append(input_ids.shape[0])
            if input_ids.shape[0] > 4:
                raise torch.OutOfMemoryError("CUDA out of memory.")
        return real(self, input_ids=input_ids, **kw)
    monkeypatch.setattr(LlamaModel, "forward", forward)
    full = score_items(model, tok, items, batch_size=8, progress=False, share_prompt=False)
    # two sequences per item: 8 items fail, 4 fail, then 2 at a time
    assert len(items) == 11 and sizes == [16, 8] + [4] * 5 + [2]
    sizes.clear()
    backed_off = score_items(model, tok, items, batch_size=8, progress=False)
    assert sizes == [8, 4, 4, 3]   # one prompt per item: 8 fail, then 4 at a time
    for rows in (auto, full, backed_off):
        assert [(r["case_id"], r["kind"], r["index"]) for r in rows] == [
            (r["case_id"], r["kind"], r["index"]) for r in ref]
        for r, e in zip(rows, ref):
            assert r["lp_target"] == pytest.approx(e["lp_target"], abs=1e-4)
            assert r["lp_alt"] == pytest.approx(e["lp_alt"], abs=1e-4)


def test_stats_backoff_redoes_a_batch_without_counting_a_layer_twice(tiny_model):
    """Out of memory inside block 2, after layer 1's keys were added: the retried halves
    skip layer 1, and both layers equal the undisturbed statistics."""
    from edit_retention.stats import compute_mom2
    model, tok = tiny_model
    texts = [f"Sentence {i} is about the weather, rivers and clocks." * (1 + i % 3) for i in range(8)]
    ref = compute_mom2(model, tok, texts, [1, 2], max_len=24, batch_size=4, progress=False)
    failures = []

    def pre(_m, args, kw):
        h = kw.get("hidden_states", args[0] if args else None)
        if h.shape[0] > 2:
            failures.append(h.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory.")
    handle = model.model.layers[2].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        got = compute_mom2(model, tok, texts, [1, 2], max_len=24, batch_size=4, progress=False)
    finally:
        handle.remove()
    assert failures == [4]
    assert got.tokens == ref.tokens and got.texts == ref.texts
    for layer in (1, 2):
        torch.testing.assert_close(got[layer], ref[layer], rtol=1e-6, atol=1e-9)
    auto = compute_mom2(model, tok, texts, [1, 2], max_len=24, batch_size="auto", progress=False)
    torch.testing.assert_close(auto[2], ref[2], rtol=1e-6, atol=1e-9)


def test_cli_takes_auto_and_the_job_memory(tiny_model_dir, tmp_path, capsys):
    from edit_retention.cli import main
    from edit_retention.io import write_jsonl
    from edit_retention.stats import load_stats
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"text": f"Text {i} about rivers and clocks."} for i in range(6)])
    args = ["stats", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--layers", "1",
            "--max-len", "16", "--out-dir", str(tmp_path / "s")]
    assert main(args + ["--batch-size", "auto", "--mem-mb", "2000"]) == 0
    stats, meta = load_stats(tmp_path / "s" / "layer1.safetensors")
    assert meta["n_samples"] == 6 and 1 in stats
    assert memory.budget_bytes("cpu") == int(2000 * 2**20 * memory.FRACTION)
    with pytest.raises(SystemExit):
        main(args + ["--batch-size", "lots"])
    assert 'a batch size must be an integer >= 1 or "auto", got \'lots\'' in capsys.readouterr().err


def test_auto_inference_batches_stop_where_speed_stops(tiny_model):
    """On CPU a scoring pass past 32 items only adds padding (the measurement behind
    INFERENCE_CAP); training micro-batches are capped by the optimiser batch alone."""
    model, _ = tiny_model
    assert memory.auto_batch_size(model, per_item=1, cap=1000, where="t", inference=True) == 32
    assert memory.auto_batch_size(model, per_item=1, cap=1000, where="t") == 1000
    assert memory.auto_batch_size(model, per_item=1, cap=12, where="t", inference=True) == 12
