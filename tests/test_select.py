import pytest

from conftest import make_record
from edit_retention.io import InputError
from edit_retention.select import split_known


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
    from edit_retention.select import split_known
    recs = [{"case_id": f"r{r}-{i}", "relation": f"P{r}"} for r in range(n_rel) for i in range(10)]
    edit, control = split_known(recs, [True] * len(recs), 2 * n_rel, 2 * n_rel, seed=0)
    rels = lambda xs: sorted(x["relation"] for x in xs)  # noqa: E731
    assert rels(edit) == rels(control) == sorted(f"P{r}" for r in range(n_rel) for _ in range(2))
    assert not {x["case_id"] for x in edit} & {x["case_id"] for x in control}
