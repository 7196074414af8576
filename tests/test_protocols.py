"""The success protocols on hand-built rows and generations, greedy generation on the tiny
model (batch-size independence), and the claims under every protocol on a synthetic grid."""
from __future__ import annotations

import math

import pytest

from conftest import make_record
from edit_retention.evaluate import GENERATED_KINDS, build_items, score_items
from edit_retention.protocols import (ASYMMETRIC, PROTOCOLS, contains_object, metric_name, protocol_for,
                                      split_metric, success)


def _row(lp_target, lp_alt, top1, generation=None, target="Paris"):
    row = {"target": target, "lp_target": lp_target, "n_target": 1, "lp_alt": lp_alt, "n_alt": 1, "top1": top1}
    return row if generation is None else dict(row, generation=generation)


def test_first_token_passes_where_probability_fails_and_the_reverse():
    # Greedy first token is the object's, but the whole object is less likely than the alternative.
    a = _row(lp_target=math.log(0.2), lp_alt=math.log(0.3), top1=True)
    assert success(a, "first_token") and not success(a, "probability")
    # The object beats the alternative, but another token is the greedy one.
    b = _row(lp_target=math.log(0.3), lp_alt=math.log(0.1), top1=False)
    assert success(b, "probability") and not success(b, "first_token")


def test_generation_contains_finds_a_late_mention_as_whole_words():
    late = " the north of the country, about 40 km from the sea. Its capital, paris, is"
    row = _row(0.0, 0.0, top1=False, generation=late)
    assert success(row, "generation_contains") and not success(row, "first_token")
    assert not success(dict(row, generation=" Parisian cafés"), "generation_contains")   # inside a longer word
    assert contains_object(" is\nBuenos   Aires.", "Buenos Aires")                       # spacing collapsed
    assert contains_object("ＰＡＲＩＳ", "Paris")                                          # NFKC + casefold
    assert not contains_object(" Paris", "")
    assert success(_row(0.0, 0.0, True), "generation_contains") is None                  # not generated
    with pytest.raises(ValueError, match="unknown protocol"):
        success(row, "exact_match")


def test_metric_names_and_the_reference_pairing():
    assert metric_name("retention_rewrite", "probability") == "retention_rewrite"
    assert metric_name("efr", "first_token") == "efr@first_token"
    assert split_metric("efr@first_token") == ("efr", "first_token")
    assert split_metric("efr") == ("efr", "probability")
    assert protocol_for(ASYMMETRIC, "edited") == "first_token"
    assert protocol_for(ASYMMETRIC, "intrinsic") == "generation_contains"
    assert [protocol_for(p, "edited") for p in PROTOCOLS] == list(PROTOCOLS)


def _items():
    edited = [make_record(0), make_record(1, subject="Grand Fenwick", true="Berlin", new="Buenos Aires")]
    control = [make_record(2, subject="Ruritania", true="Madrid", new="Tokyo"),
               make_record(3, subject="the small mountain republic of Ruritania", true="Madrid", new="Lima")]
    para = {"augment": ["{}'s capital city is"], "evaluate": ["{} has its capital in", "The seat of government of {} is"]}
    return build_items(edited, control, {r["case_id"]: para for r in edited + control})


def test_generation_is_the_same_at_batch_size_1_and_8(tiny_model):
    model, tok = tiny_model
    items = _items()
    lengths = {len(tok(it["prompt"])["input_ids"]) for it in items}
    assert len(lengths) >= 3                        # left padding really happens in a batch of 8
    one = score_items(model, tok, items, batch_size=1, progress=False, generation_tokens=12)
    eight = score_items(model, tok, items, batch_size=8, progress=False, generation_tokens=12)
    gens = [r.get("generation") for r in one]
    assert gens == [r.get("generation") for r in eight]
    assert all((g is not None) == (it["kind"] in GENERATED_KINDS) for g, it in zip(gens, items))
    assert all(g for g in gens if g is not None)
    # and equal to generating each prompt on its own, by hand, without any padding
    it = next(i for i, x in enumerate(items) if x["kind"] == "paraphrase")
    ids = tok(items[it]["prompt"], return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == gens[it]
    assert not model.training
    off = score_items(model, tok, items[:2], batch_size=8, progress=False)
    assert all("generation" not in r for r in off)

