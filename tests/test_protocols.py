"""The success protocols on hand-built rows and generations, greedy generation on the tiny
model (batch-size independence), and the claims under every protocol on a synthetic grid."""
from __future__ import annotations

import math

import pytest

from conftest import make_record
from edit_retention.evaluate import GENERATED_KINDS, build_items, score_items
from edit_retention.protocols import (ASYMMETRIC, PROTOCOLS, contains_object, metric_name, protocol_for,
                                      split_metric, success)
from edit_retention.tasks.scoring import greedy_ids


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
    # greedy_ids itself at batch sizes 1 and 8 (score_items' calls hold more rows per batch)
    prompts = [tok(x["prompt"])["input_ids"] for x in items]
    by1 = greedy_ids(model, prompts, 12, 1, tok.eos_token_id, tok.eos_token_id)
    assert by1 == greedy_ids(model, prompts, 12, 8, tok.eos_token_id, tok.eos_token_id)
    # and equal to generating each prompt on its own, by hand, without any padding
    it = next(i for i, x in enumerate(items) if x["kind"] == "paraphrase")
    ids = tok(items[it]["prompt"], return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == gens[it]
    assert not model.training
    off = score_items(model, tok, items[:2], batch_size=8, progress=False)
    assert all("generation" not in r for r in off)


# --- summary and claims under every protocol (synthetic scores, no model) ---------------------

from _synth import row as synth_row  # noqa: E402
from edit_retention.claims import evaluate_claims  # noqa: E402
from edit_retention.io import write_jsonl  # noqa: E402
from edit_retention.summarize import summarize_all  # noqa: E402


def _scored(cid, knowledge, kind, top1, says_object):
    """A prompt that holds under the probability test, with the given first token and generation."""
    r = synth_row(cid, knowledge, kind, 0, 0.5)
    return dict(r, target="Paris", top1=top1,
                generation=" Paris, of course." if says_object else " a city in the north of the country")


def _phase(edited_top1, intr_top1, edited_says=True, intr_says=True, n=18):
    rows = []
    for j in range(n):
        for knowledge, top1, says in (("edited", edited_top1, edited_says), ("intrinsic", intr_top1, intr_says)):
            cid = f"{knowledge[0]}{j}"
            rows += [_scored(cid, knowledge, k, top1(j), says) for k in ("rewrite", "paraphrase")]
    return rows


def _study(tmp_path, phases: dict, n=18):
    records = [{"case_id": f"{k}{j}", "relation": f"P{j % 3}"} for k in "ei" for j in range(n)]
    cell = {"model": "m", "editor": "rome", "task": "text", "remedy": "none", "seed": 0, "phases": {}}
    for name, rows in phases.items():
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
        cell["phases"][name] = str(tmp_path / f"{name}.jsonl")
    return summarize_all([cell], {r["case_id"]: r["relation"] for r in records},
                         {"none": {"paraphrase_k": 0, "freeze": "none"}}, n_boot=200)


def test_summary_carries_every_protocol_with_units(tmp_path):
    # After fine-tuning every fact still holds by probability and still says its object, but
    # only 6 of 18 edits (j < 6) and 12 of 18 intrinsic facts (j < 12) keep the first token.
    res = _study(tmp_path, {"edited": _phase(lambda j: True, lambda j: True),
                            "finetuned": _phase(lambda j: j < 6, lambda j: j < 12)})
    s = res.summary.set_index(["knowledge", "phase", "metric"])
    assert s.loc[("edited", "finetuned", "retention_rewrite"), "value"] == 1.0
    assert s.loc[("edited", "finetuned", "retention_rewrite@first_token"), "value"] == pytest.approx(6 / 18)
    assert s.loc[("edited", "finetuned", "efr@first_token"), "value"] == pytest.approx(12 / 18)
    assert s.loc[("intrinsic", "finetuned", "retention_paraphrase@first_token"), "value"] == pytest.approx(12 / 18)
    assert s.loc[("edited", "finetuned", "retention_rewrite@generation_contains"), "value"] == 1.0
    assert s.loc[("edited", "finetuned", "rewrite_success@first_token"), "n"] == 18
    assert list(res.summary.columns)[-2:] == ["value", "n"]          # columns unchanged
    for (knowledge, phase, metric), r in s.iterrows():                # every value has its units
        u = res.units[(res.units.knowledge == knowledge) & (res.units.phase == phase) & (res.units.metric == metric)]
        if metric != "target_prob_ratio" and r["n"]:
            assert u.num.sum() / u.den.sum() == pytest.approx(r["value"]), metric
    assert "retention_rewrite@generation_contains" in set(res.cells.metric)
    # without generations the generation protocol is absent, the others stay
    plain = [{k: v for k, v in r.items() if k != "generation"} for r in _phase(lambda j: True, lambda j: True)]
    res2 = _study(tmp_path, {"edited": plain, "finetuned": plain})
    assert not any("generation_contains" in m for m in res2.summary.metric)
    assert "retention_rewrite@first_token" in set(res2.summary.metric)


def test_asymmetric_pairing_creates_a_gap_no_symmetric_protocol_shows(tmp_path):
    # Both kinds lose their first token in the same share (1 in 3 kept) and keep saying their
    # object in the continuation: no symmetric protocol sees a difference, but edits judged by
    # first_token against intrinsic facts judged by generation_contains look forgotten.
    keep = lambda j: j % 3 == 0  # noqa: E731
    res = _study(tmp_path, {"edited": _phase(lambda j: True, lambda j: True),
                            "finetuned": _phase(keep, keep)})
    claims = evaluate_claims(res.units, res.cells, n_boot=200, n_perm=400)
    c1 = claims[(claims.claim == "C1") & claims.primary].set_index("protocol")
    assert list(c1.index) == ["probability", "first_token", "generation_contains", ASYMMETRIC]
    for p in ("probability", "first_token", "generation_contains"):
        assert c1.loc[p, "effect"] == pytest.approx(0.0), p
        assert c1.loc[p, "verdict"] != "supports"
    assert c1.loc[ASYMMETRIC, "effect"] == pytest.approx(2 / 3)
    assert c1.loc[ASYMMETRIC, "verdict"] == "supports"
    # claims about edits alone get no reference_pairing row (it would repeat first_token's)
    assert set(claims[claims.protocol == ASYMMETRIC].claim) == {"C1"}
    assert (claims.groupby(["claim", "protocol"]).primary.sum() == 1).all()


def test_a_protocol_with_nothing_to_count_is_reported_not_dropped(tmp_path):
    # Nothing holds by first token before fine-tuning: its retention has no unit (n = 0), but
    # the claims still carry the protocol, with "cannot tell" and the reason.
    never = lambda j: False  # noqa: E731
    res = _study(tmp_path, {"edited": _phase(never, never), "finetuned": _phase(never, never)})
    assert "retention_rewrite@first_token" not in set(res.units.metric)
    claims = evaluate_claims(res.units, res.cells, n_boot=50, n_perm=50)
    c1 = claims[(claims.claim == "C1") & claims.primary].set_index("protocol")
    assert c1.loc["first_token", "verdict"] == "cannot tell at this n"
    assert "n = 0" in c1.loc["first_token", "note"]
    assert ASYMMETRIC in c1.index
