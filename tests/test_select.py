import json
from collections import Counter

import pytest

from conftest import make_record
from edit_retention.io import InputError
from edit_retention.select import choose, read_cache, select_facts, selection_order, split_known


def _records():
    recs = []
    for i in range(24):
        r = make_record(i, subject=f"Land{i}")
        r["relation"] = ["P36", "P30", "P38"][i % 3]
        recs.append(r)
    return recs


def test_split_is_disjoint_balanced_and_known_only():
    recs = _records()
    mask = [i % 4 != 0 for i in range(len(recs))]
    edit, control = split_known(recs, mask, 6, 6, seed=0)
    ids_e = {r["case_id"] for r in edit}
    ids_c = {r["case_id"] for r in control}
    assert len(ids_e) == 6 and len(ids_c) == 6 and not ids_e & ids_c
    known = {r["case_id"] for r, m in zip(recs, mask) if m}
    assert ids_e | ids_c <= known
    for rel in ("P36", "P30", "P38"):
        assert sum(r["relation"] == rel for r in edit) == sum(r["relation"] == rel for r in control)
    assert split_known(recs, mask, 6, 6, seed=0) == (edit, control)
    assert split_known(recs, mask, 6, 6, seed=1) != (edit, control)


def test_split_errors_when_model_knows_too_little():
    recs = _records()
    with pytest.raises(InputError, match="knows 3 of 24 facts"):
        split_known(recs, [i < 3 for i in range(24)], 2, 2, seed=0, where="select")


@pytest.mark.parametrize("n_rel", [2, 3, 6])
def test_edit_and_control_share_every_relation(n_rel):
    """Known facts are paired within their relation, one of each pair per set: both sets
    have the same relation mix, whatever the number of relations."""
    recs = [{"case_id": f"r{r}-{i}", "relation": f"P{r}"} for r in range(n_rel) for i in range(10)]
    edit, control = split_known(recs, [True] * len(recs), 2 * n_rel, 2 * n_rel, seed=0)
    rels = lambda xs: sorted(x["relation"] for x in xs)  # noqa: E731
    assert rels(edit) == rels(control) == sorted(f"P{r}" for r in range(n_rel) for _ in range(2))
    assert not {x["case_id"] for x in edit} & {x["case_id"] for x in control}


def test_cap_per_relation_is_relaxed_when_a_relation_runs_short():
    """Relations give equal numbers where they can (cap = 8 / 4 pairs = 2); R0 has only
    one known pair, so once every flag is known the cap rises and the others give more."""
    recs = [{"case_id": f"c{i:02d}", "relation": f"R{i % 4}"} for i in range(80)]
    mask = [r["relation"] != "R0" or i < 8 for i, r in enumerate(recs)]   # R0: c00, c04 known
    edit, control = split_known(recs, mask, 8, 8, seed=0)
    got = Counter(r["relation"] for r in edit)
    assert got == Counter(r["relation"] for r in control) and sum(got.values()) == 8
    assert got["R0"] <= 1 and max(got.values()) == 3        # the cap rose from 2 to 3, no further


def test_unequal_sizes_and_unpaired_fallback():
    recs = [{"case_id": f"c{i}", "relation": f"R{i % 5}"} for i in range(40)]
    edit, control = split_known(recs, [True] * 40, 6, 3, seed=0)
    assert len(edit) == 6 and len(control) == 3
    # five relations with one known fact each: no pairs; the fallback still fills 2 + 2 (logged)
    mask = [i < 5 for i in range(40)]
    c = choose(recs, selection_order(recs, 0), dict(enumerate(mask)), 2, 2)
    assert c.done and len(c.unpaired) == 4 and len(c.edit) == len(c.control) == 2


# ---------------------------------------------------------------- scoring only what the choice needs

def _big(n=600, n_rel=7):
    return [make_record(i, subject=f"Land{i}") | {"relation": f"P{i % n_rel}"} for i in range(n)]


class FakeScorer:
    """Deterministic scores: a fact is known when its number is not a multiple of 3 (and,
    with ``flip``, the other way round: a different model). Counts what it scored."""

    def __init__(self, flip=False):
        self.calls, self.flip = [], flip

    def __call__(self, items):
        self.calls.append(len(items))
        out = []
        for it in items:
            known = (int(it["case_id"][1:]) % 3 != 0) != self.flip
            out.append({**it, "top1": known, "lp_target": -1.0, "n_target": 1,
                        "lp_alt": -2.0 if known else -0.5, "n_alt": 1})
        return out


def test_result_does_not_depend_on_chunk_size_and_stops_early():
    recs = _big()
    full = split_known(recs, [int(r["case_id"][1:]) % 3 != 0 for r in recs], 24, 24, seed=3)
    results = []
    for chunk in (1, 7, 50, None, 10_000):
        scorer = FakeScorer()
        edit, control, rows, info = select_facts(None, None, recs, 24, 24, seed=3, chunk=chunk, score_fn=scorer)
        results.append((edit, control))
        if chunk != 10_000:
            assert info["n_scored"] < len(recs), chunk      # stopped early
        assert info["n_scored"] == sum(scorer.calls) >= info["n_walked"] == len(rows)
        assert all(r["known"] == (int(r["case_id"][1:]) % 3 != 0) for r in rows)
        assert [r["order"] for r in rows] == list(range(len(rows)))
    assert all(r == full for r in results)
    edit, control = full
    assert Counter(r["relation"] for r in edit) == Counter(r["relation"] for r in control)


def test_scores_of_a_failed_selection_are_cached_and_reused(tmp_path):
    recs = _big(90)
    cache = tmp_path / "select" / "score_cache.jsonl"
    scorer = FakeScorer()
    with pytest.raises(InputError, match="knows 60 of 90 facts.*kept in .*score_cache.jsonl"):
        select_facts(None, None, recs, 40, 40, cache_path=cache, fingerprint="m1", score_fn=scorer)
    assert sum(scorer.calls) == 90 and len(read_cache(cache, "m1")) == 90
    # a smaller n: nothing is scored again, same choice as without the cache
    scorer = FakeScorer()
    got = select_facts(None, None, recs, 10, 10, cache_path=cache, fingerprint="m1", score_fn=scorer)
    assert scorer.calls == [] and got[3]["n_cached"] == 90 and got[3]["n_scored"] == 0
    assert got[:2] == select_facts(None, None, recs, 10, 10, score_fn=FakeScorer())[:2]
    # another model: the cache is ignored and rewritten
    scorer = FakeScorer(flip=True)
    select_facts(None, None, recs, 5, 5, cache_path=cache, fingerprint="m2", score_fn=scorer)
    assert sum(scorer.calls) > 0 and read_cache(cache, "m1") == {}
    # a line cut short by an interrupted write is ignored, and the next append starts clean
    n = len(read_cache(cache, "m2"))
    with open(cache, "a") as f:
        f.write('{"key": "abc", "top1"')
    assert len(read_cache(cache, "m2")) == n
    select_facts(None, None, recs, 12, 12, cache_path=cache, fingerprint="m2", score_fn=FakeScorer(flip=True))
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_all_facts_scores_nothing():
    recs = _big(30)
    edit, control, rows, info = select_facts(None, None, recs, 4, 4, all_facts=True,
                                             score_fn=lambda items: pytest.fail("scored"))
    assert len(edit) == len(control) == 4 and info["n_scored"] == 0 and all(r["known"] for r in rows)
    with pytest.raises(InputError, match="30 facts, fewer than"):
        select_facts(None, None, recs, 20, 20, all_facts=True)
