"""Teacher-forced scoring on the tiny random model, and item construction."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import make_record
from edit_retention.evaluate import build_items, evaluate, score_items
from edit_retention.io import InputError

PARA = {"augment": ["{}'s capital city is", "The capital city of {} is"],
        "evaluate": ["{} has its capital in", "The seat of government of {} is"]}


def _records():
    edited = [make_record(0), make_record(1, subject="Grand Fenwick", true="Berlin", new="Buenos Aires")]
    control = [make_record(2, subject="Ruritania", true="Madrid", new="Tokyo")]
    paraphrases = {r["case_id"]: PARA for r in edited + control}
    return edited, control, paraphrases


def test_build_items_uses_evaluation_paraphrases_only():
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    prompts = {it["prompt"] for it in items}
    for t in PARA["augment"]:
        for subj in ("Freedonia", "Grand Fenwick", "Ruritania"):
            assert t.replace("{}", subj) not in prompts
    c0 = [it for it in items if it["case_id"] == "c0"]
    assert [(it["kind"], it["index"]) for it in c0] == [
        ("rewrite", 0), ("paraphrase", 0), ("paraphrase", 1), ("neighborhood", 0)]
    rw, pp, nb = c0[0], c0[2], c0[3]
    assert rw == {"case_id": "c0", "knowledge": "edited", "kind": "rewrite", "index": 0,
                  "prompt": "The capital of Freedonia is", "target": "Rome", "alt": "Paris"}
    assert pp["prompt"] == "The seat of government of Freedonia is" and pp["target"] == "Rome"
    assert (nb["prompt"], nb["target"], nb["alt"]) == ("The capital of Sylvania is", "Lyon", "Rome")
    c2 = [it for it in items if it["case_id"] == "c2"]
    assert {it["knowledge"] for it in c2} == {"intrinsic"}
    assert {it["kind"] for it in c2} == {"rewrite", "paraphrase"}  # no neighbourhood
    assert all((it["target"], it["alt"]) == ("Madrid", "Tokyo") for it in c2)


def test_build_items_rejects_missing_or_leaking_paraphrases():
    edited, control, paraphrases = _records()
    with pytest.raises(InputError, match="'c2'"):
        build_items(edited, control, {k: v for k, v in paraphrases.items() if k != "c2"})
    leak = dict(paraphrases, c1={"augment": ["{} x"], "evaluate": ["{} x"]})
    with pytest.raises(InputError, match="'c1'.*augmentation"):
        build_items(edited, control, leak)


def _by_hand(model, tok, prompt, target):
    p = tok(prompt)["input_ids"]
    t = tok(" " + target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    lp = sum(float(logp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
    top1 = int(logp[len(p) - 1].argmax()) == t[0]
    return lp, len(t), top1


def test_scores_equal_log_softmax_by_hand(tiny_model):
    model, tok = tiny_model
    item = {"case_id": "h", "knowledge": "edited", "kind": "rewrite", "index": 0,
            "prompt": "The capital of Freedonia is", "target": "Buenos Aires", "alt": "Rome"}
    (row,) = score_items(model, tok, [item], progress=False)
    lp_t, n_t, top1 = _by_hand(model, tok, item["prompt"], item["target"])
    lp_a, n_a, _ = _by_hand(model, tok, item["prompt"], item["alt"])
    assert n_t >= 2 and row["n_target"] == n_t and row["n_alt"] == n_a
    assert row["lp_target"] == pytest.approx(lp_t, abs=1e-4)
    assert row["lp_alt"] == pytest.approx(lp_a, abs=1e-4)
    assert row["p_target"] == pytest.approx(math.exp(lp_t / n_t), rel=1e-4)
    assert row["top1"] == top1
    assert {k: row[k] for k in item} == item


def test_batched_equals_one_by_one(tiny_model):
    model, tok = tiny_model
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    assert tok.pad_token_id == tok.eos_token_id  # the padding case the brief warns about
    batched = score_items(model, tok, items, batch_size=4, progress=False)
    single = [score_items(model, tok, [it], batch_size=1, progress=False)[0] for it in items]
    assert [r["prompt"] for r in batched] == [it["prompt"] for it in items]  # input order kept
    for b, s in zip(batched, single):
        for key in ("lp_target", "lp_alt", "p_target", "p_alt"):
            assert b[key] == pytest.approx(s[key], abs=1e-5), (b["prompt"], key)
        assert (b["n_target"], b["n_alt"], b["top1"]) == (s["n_target"], s["n_alt"], s["top1"])
    assert evaluate(model, tok, edited, control, paraphrases, batch_size=4, progress=False) == batched
    assert not model.training


class _EmptyFor:
    """A tokenizer wrapper that tokenizes one string to nothing."""

    def __init__(self, tok, empty: str):
        self.tok, self.empty = tok, empty
        self.pad_token_id, self.eos_token_id = tok.pad_token_id, tok.eos_token_id

    def __call__(self, texts, **kw):
        out = self.tok(texts, **kw)
        out["input_ids"] = [[] if t == self.empty else ids for t, ids in zip(texts, out["input_ids"])]
        return out


def test_empty_targets_raise_naming_case(tiny_model):
    model, tok = tiny_model
    item = {"case_id": "bad7", "knowledge": "edited", "kind": "rewrite", "index": 0,
            "prompt": "The capital of X is", "target": "Rome", "alt": "Paris"}
    with pytest.raises(InputError, match="bad7.*'target'"):
        score_items(model, _EmptyFor(tok, " Rome"), [item], progress=False)
    with pytest.raises(InputError, match="bad7.*'alt'.*empty"):
        score_items(model, tok, [dict(item, alt="  ")], progress=False)


def test_head_only_at_scored_positions_and_full_path_agree(tiny_model):
    """The fast path (head applied only where a score is read) and the full-logits path
    (taken for models that rescale logits) give the same scores."""
    from edit_retention.evaluate import _plain_head
    model, tok = tiny_model
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    assert _plain_head(model)
    fast = score_items(model, tok, items, batch_size=3, progress=False)
    model.config.final_logit_softcapping = 30.0          # Gemma-2 style: use the full path
    assert not _plain_head(model)
    full = score_items(model, tok, items, batch_size=3, progress=False)
    for a, b in zip(fast, full):
        assert a["lp_target"] == pytest.approx(b["lp_target"], abs=1e-5)
        assert a["lp_alt"] == pytest.approx(b["lp_alt"], abs=1e-5)
        assert a["top1"] == b["top1"]


def test_peft_wrapped_model_scores_like_the_plain_model(tiny_model):
    """Checkpoint scoring gets a peft model mid-training; LoRA starts as a no-op (B = 0), so
    its scores equal the plain model's."""
    from peft import LoraConfig, get_peft_model
    model, tok = tiny_model
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    plain = score_items(model, tok, items, batch_size=4, progress=False)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    for a, b in zip(plain, score_items(wrapped, tok, items, batch_size=4, progress=False)):
        assert a["lp_target"] == pytest.approx(b["lp_target"], abs=1e-5) and a["top1"] == b["top1"]


def test_prompt_run_once_equals_both_full_sequences(tiny_model):
    """Issue 16 item 3: each prompt is run once and both objects continue from its KV cache;
    the scores equal scoring prompt + target and prompt + alt as full sequences (float32
    rounding), at any batch size, with prompts of different lengths and objects of one or
    several tokens."""
    model, tok = tiny_model
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases) + [
        {"case_id": "x", "knowledge": "edited", "kind": "rewrite", "index": 0,
         "prompt": "In a much longer prompt than the others, the capital of Freedonia is",
         "target": "Buenos Aires de la Plata", "alt": "Rome"}]
    lengths = {len(tok(" " + it[k], add_special_tokens=False)["input_ids"]) for it in items for k in ("target", "alt")}
    assert 1 in lengths and max(lengths) >= 4
    for bs in (1, 3, 64):
        shared = score_items(model, tok, items, batch_size=bs, progress=False)
        full = score_items(model, tok, items, batch_size=bs, progress=False, share_prompt=False)
        for s, f in zip(shared, full):
            for key in ("lp_target", "lp_alt"):
                assert s[key] == pytest.approx(f[key], abs=2e-5), (s["prompt"], key, bs)
            assert (s["top1"], s["n_target"], s["n_alt"]) == (f["top1"], f["n_target"], f["n_alt"])


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox"])
def test_prompt_run_once_on_learned_and_partial_rotary_positions(tiny_model, arch):
    """The shared-prompt pass gives each prompt its own positions under left padding on
    other position schemes too: GPT-2's learned position embeddings, GPT-NeoX's partial
    rotary; scores equal the full sequences'."""
    from transformers import AutoConfig, AutoModelForCausalLM
    _, tok = tiny_model
    shape = ({"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64} if arch == "gpt2" else
             {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "rotary_pct": 0.5})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, vocab_size=len(tok), **shape)).eval()
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    shared = score_items(model, tok, items, batch_size=5, progress=False)
    full = score_items(model, tok, items, batch_size=5, progress=False, share_prompt=False)
    for s, f in zip(shared, full):
        assert s["lp_target"] == pytest.approx(f["lp_target"], abs=2e-5)
        assert s["lp_alt"] == pytest.approx(f["lp_alt"], abs=2e-5)
        assert s["top1"] == f["top1"]


@pytest.mark.parametrize("cache", [None, "opaque"])
def test_a_model_without_a_usable_cache_is_scored_on_full_sequences(tiny_model, monkeypatch, cache):
    """A model whose forward returns no KV cache (or one without ``reorder_cache``) falls
    back to the two full sequences: same scores, no error."""
    from transformers import LlamaModel
    model, tok = tiny_model
    edited, control, paraphrases = _records()
    items = build_items(edited, control, paraphrases)
    ref = score_items(model, tok, items, batch_size=4, progress=False, share_prompt=False)
    real = LlamaModel.forward

    def no_cache(self, *args, **kw):
        out = real(self, *args, **kw)
        out.past_key_values = None if cache is None else object()
        return out
    monkeypatch.setattr(LlamaModel, "forward", no_cache)
    got = score_items(model, tok, items, batch_size=4, progress=False)
    assert [r["lp_target"] for r in got] == pytest.approx([r["lp_target"] for r in ref], abs=1e-5)
    assert [r["lp_alt"] for r in got] == pytest.approx([r["lp_alt"] for r in ref], abs=1e-5)
