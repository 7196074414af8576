"""Split a fact set into the facts to edit and the intrinsic control set, scoring only as
many facts as the choice needs.

Usage::

    from edit_retention.select import select_facts
    edit, control, rows, info = select_facts(model, tok, records, n_edit=48, n_control=48, seed=0,
                                             cache_path="data/select/m/f/score_cache.jsonl",
                                             fingerprint=model_fingerprint("data/models/m/base", "cpu"))

A fact counts as *known* by the base model when, on its main prompt, (1) the greedy next
token equals the first token of target_true (top-1, the zsRE-style test) and (2) the
whole true object is more likely than the counterfactual one (mean token log-prob, the
CounterFact test). The second guards against a first token that is shared by many
objects ("United ..."). Both sets are drawn from known facts so that both start "held"
and retention is comparable.

The choice (``choose``) is a function of a seeded order of the records and of the known
flags of a prefix of that order, nothing else:

1. the order: the records sorted by case id, shuffled by ``random.Random(seed)``;
2. walking it, the known facts of each relation are paired in the order met: the first
   known fact of a relation waits, the second completes a pair, which puts one fact in
   each set (the earlier one goes to the edit set in the relation's even-numbered pairs,
   to the control set in its odd ones). So every relation has as many facts in one set as
   in the other, which is what the relation-stratified tests compare;
3. a relation gives at most ``cap`` pairs, ``cap = ceil(min(n_edit, n_control) / number of
   relations in the file)``, so that relations are represented equally where the model
   knows enough of each (48 + 48 of 6 relations: 8 + 8 per relation). The cap rises by one
   each time the walk has met another 2 * (n_edit + n_control) known facts without
   filling the sets (relations the model hardly knows would otherwise hold the walk to
   the end of the order);
4. once min(n_edit, n_control) pairs are taken, the larger set takes the next known facts
   as they come, of any relation;
5. the walk stops as soon as both sets are full. If the order runs out first (every flag
   is then known), the walk is redone with ``cap + 1``, and so on up to no cap; if it still
   falls short, facts still waiting for a partner fill what is missing, in order (logged:
   they have no partner of their relation in the other set), and if that is not enough
   either, an InputError.

``select_facts`` scores the order chunk by chunk and stops when ``choose`` is done, so on a
large file with few relations it scores a small part of it (roughly (n_edit + n_control) /
share known; a file with many small relations, where the cap makes it look further, or one
where the model knows too few facts, is scored whole).
Because the choice reads only the flags of the prefix it walked, it does not depend on
the chunk size or on how far past that prefix the scoring went. (Flags come from floating
point scores; a batch of other composition can move a score by rounding, which could flip
a fact that sits exactly on the boundary. The same is true of any batched scoring.)

Scores are kept in a cache file (``cache_path``, JSONL; the first line names the model
``fingerprint``, a changed model starts it afresh), keyed by the scored text (case id,
prompt, target, alternative), appended after every chunk. A selection that fails, or is
interrupted, leaves its scores behind, and a rerun (with a smaller n_edit, another seed)
scores only what the cache lacks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

from .io import InputError
from .metrics import prob_success
from .records import fill

log = logging.getLogger(__name__)
CACHE_TAG = "edit_retention select score cache v1"


def candidate_item(r: dict) -> dict:
    """The item that scores whether the base model knows record ``r``."""
    return {"case_id": r["case_id"], "knowledge": "candidate", "kind": "rewrite", "index": 0,
            "prompt": fill(r["prompt"], r["subject"]), "target": r["target_true"], "alt": r["target_new"]}


def is_known(score: dict) -> bool:
    return bool(score["top1"]) and prob_success(score["lp_target"], score["n_target"], score["lp_alt"], score["n_alt"])


def item_key(item: dict) -> str:
    return hashlib.sha256(json.dumps([item["case_id"], item["prompt"], item["target"], item["alt"]],
                                     ensure_ascii=False).encode()).hexdigest()[:32]


def known_mask(model, tok, records: list[dict], batch_size: int = 32) -> tuple[list[bool], list[dict]]:
    """Score every record (no early stop); (known flags, score rows)."""
    from .evaluate import score_items
    scores = score_items(model, tok, [candidate_item(r) for r in records], batch_size=batch_size)
    return [is_known(s) for s in scores], scores


def selection_order(records: list[dict], seed: int) -> list[int]:
    """Indices of ``records`` in the seeded order the choice walks."""
    order = sorted(range(len(records)), key=lambda i: records[i]["case_id"])
    random.Random(seed).shuffle(order)
    return order


class Choice:
    """The outcome of ``choose``: ``done`` (both sets full), ``edit`` / ``control`` (record
    indices), ``walked`` (positions of the order read), ``unpaired`` (facts used without a
    partner of their relation), ``n_known`` (known facts met)."""

    def __init__(self, done, edit, control, walked, unpaired, n_known):
        self.done, self.edit, self.control = done, edit, control
        self.walked, self.unpaired, self.n_known = walked, unpaired, n_known


def choose(records: list[dict], order: list[int], known: dict[int, bool], n_edit: int, n_control: int) -> Choice:
    """Walk ``order`` while ``known`` (record index -> flag) has the flag; see the module
    docstring. Not done when it reaches an index without a flag before both sets are full."""
    n_both = min(n_edit, n_control)
    cap = math.ceil(n_both / len({r["relation"] for r in records}))
    while True:
        c = _walk(records, order, known, n_edit, n_control, cap, last=cap >= n_both)
        if c.done or c.walked < len(order) or cap >= n_both:
            return c
        cap += 1  # every flag is known now: let relations with more known facts give more


def _walk(records, order, known, n_edit, n_control, cap: int, last: bool) -> Choice:
    edit: list[int] = []
    control: list[int] = []
    waiting: dict[str, int] = {}
    n_pairs: Counter = Counter()
    n_known = 0
    n_both = min(n_edit, n_control)
    step = 2 * (n_edit + n_control)
    for pos, i in enumerate(order):
        if len(edit) >= n_edit and len(control) >= n_control:
            return Choice(True, edit, control, pos, [], n_known)
        if i not in known:
            return Choice(False, edit, control, pos, [], n_known)
        if not known[i]:
            continue
        n_known += 1
        if len(edit) < n_both or len(control) < n_both:
            rel = records[i]["relation"]
            if n_pairs[rel] >= cap + (n_known - 1) // step:
                continue
            if rel not in waiting:
                waiting[rel] = i
                continue
            first = waiting.pop(rel)
            a, b = (first, i) if n_pairs[rel] % 2 == 0 else (i, first)
            n_pairs[rel] += 1
            edit.append(a)
            control.append(b)
        elif len(edit) < n_edit:
            edit.append(i)
        else:
            control.append(i)
    if len(edit) >= n_edit and len(control) >= n_control or not last:
        return Choice(len(edit) >= n_edit and len(control) >= n_control, edit, control, len(order), [], n_known)
    # The order ran out with no cap left: facts still waiting for a partner fill what is missing.
    position = {i: pos for pos, i in enumerate(order)}
    unpaired = []
    for i in sorted(waiting.values(), key=position.__getitem__):
        if len(edit) >= n_edit and len(control) >= n_control:
            break
        (edit if n_edit - len(edit) >= n_control - len(control) else control).append(i)
        unpaired.append(i)
    done = len(edit) >= n_edit and len(control) >= n_control
    return Choice(done, edit, control, len(order), unpaired, n_known)


def split_known(records: list[dict], mask: list[bool], n_edit: int, n_control: int, seed: int,
                where: str = "select") -> tuple[list[dict], list[dict]]:
    """The choice when every record's flag is known (``mask``); InputError if it falls short."""
    c = choose(records, selection_order(records, seed), dict(enumerate(mask)), n_edit, n_control)
    if not c.done:
        raise InputError(_short(where, sum(mask), len(records), n_edit, n_control))
    return [records[i] for i in c.edit], [records[i] for i in c.control]


def _short(where: str, n_known: int, n: int, n_edit: int, n_control: int) -> str:
    return (f"{where}: the base model knows {n_known} of {n} facts, fewer than n_edit + n_control = "
            f"{n_edit + n_control}; lower them or use a larger fact set")


def model_fingerprint(model_dir, device: str = "cpu") -> str:
    """What the cached scores depend on besides the records: the model's config and weight
    files (sha256 of each) and the kind of device (rounding differs between devices)."""
    h = hashlib.sha256(str(device).split(":")[0].encode())
    d = Path(model_dir)
    for f in sorted(d.glob("*.json")) + sorted(d.glob("*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:32]


def read_cache(path, fingerprint: str) -> dict[str, dict]:
    """key -> score row of a cache file written for ``fingerprint`` (else empty). A last
    line cut short by an interrupted write is ignored."""
    p = Path(path)
    if not p.exists():
        return {}
    lines = p.read_text(encoding="utf-8").splitlines()
    try:
        head = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        return {}
    if head.get("cache") != CACHE_TAG or head.get("model") != fingerprint:
        log.info("%s: scores of another model or format; starting a new cache", p)
        return {}
    out = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[row["key"]] = row
    return out


class _CacheWriter:
    """Appends score rows to the cache file (a fresh file with its header when needed)."""

    def __init__(self, path, fingerprint: str, fresh: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh or not self.path.exists():
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"cache": CACHE_TAG, "model": fingerprint}) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        else:  # a previous run cut short may have left half a line
            text = self.path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                self.path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")

    def add(self, rows: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()


def select_facts(model, tok, records: list[dict], n_edit: int, n_control: int, seed: int = 0,
                 batch_size: int | str = 32, all_facts: bool = False, cache_path=None,
                 fingerprint: str = "", chunk: int | None = None, where: str = "select",
                 score_fn=None) -> tuple[list[dict], list[dict], list[dict], dict]:
    """(edit, control, score rows, info): score the seeded order chunk by chunk until
    ``choose`` is done (module docstring). ``all_facts`` (random test models) treats every
    fact as known and scores nothing. ``chunk`` fixes the records scored per round (default:
    an estimate of what is still needed from the share known so far). ``score_fn(items)``
    replaces the model's scoring (tests)."""
    from .evaluate import score_items
    order = selection_order(records, seed)
    items = [candidate_item(r) for r in records]
    if all_facts:
        c = choose(records, order, {i: True for i in range(len(records))}, n_edit, n_control)
        if not c.done:
            raise InputError(f"{where}: {len(records)} facts, fewer than n_edit + n_control = {n_edit + n_control}")
        rows = [{"case_id": records[i]["case_id"], "order": pos, "known": True, "scored": False}
                for pos, i in enumerate(order[:c.walked])]
        return ([records[i] for i in c.edit], [records[i] for i in c.control], rows,
                {"n_records": len(records), "n_scored": 0, "n_cached": 0, "n_walked": c.walked,
                 "n_known": c.n_known, "n_unpaired": 0})
    if score_fn is None:
        def score_fn(batch):
            return score_items(model, tok, batch, batch_size=batch_size)
    cached = read_cache(cache_path, fingerprint) if cache_path else {}
    writer = _CacheWriter(cache_path, fingerprint, fresh=not cached) if cache_path else None
    scores: dict[int, dict] = {}
    for i, it in enumerate(items):
        row = cached.get(item_key(it))
        if row is not None:
            scores[i] = row
    n_cached = len(scores)
    known = {i: is_known(s) for i, s in scores.items()}
    n_scored = 0
    need = n_edit + n_control
    while True:
        c = choose(records, order, known, n_edit, n_control)
        if c.done or c.walked >= len(order):
            break
        todo = [i for i in order[c.walked:] if i not in known]
        met = [known[i] for i in order[:c.walked]]
        share = max(sum(met) / len(met), 0.02) if len(met) >= 20 else 0.25
        size = chunk or max(32, math.ceil(1.25 * (need - len(c.edit) - len(c.control)) / share))
        batch = todo[:size]
        rows = score_fn([items[i] for i in batch])
        rows = [{**row, "key": item_key(items[i])} for i, row in zip(batch, rows)]
        if writer:
            writer.add(rows)
        for i, row in zip(batch, rows):
            scores[i], known[i] = row, is_known(row)
        n_scored += len(batch)
        log.info("%s: scored %d more (%d in all, %d from the cache); %d known so far", where, len(batch),
                 n_scored, n_cached, sum(known.values()))
    rows = [{**scores[i], "order": pos, "known": known[i]} for pos, i in enumerate(order[:c.walked])]
    info = {"n_records": len(records), "n_scored": n_scored, "n_cached": n_cached, "n_walked": c.walked,
            "n_known": c.n_known, "n_unpaired": len(c.unpaired)}
    if not c.done:
        raise InputError(_short(where, c.n_known, len(records), n_edit, n_control)
                         + (f" (their scores are kept in {cache_path}: a rerun scores nothing again)"
                            if cache_path else ""))
    if c.unpaired:
        log.warning("%s: %d selected facts have no partner of their relation in the other set (the "
                    "known facts of their relations ran out)", where, len(c.unpaired))
    strata = defaultdict(lambda: [0, 0])
    for i in c.edit:
        strata[records[i]["relation"]][0] += 1
    for i in c.control:
        strata[records[i]["relation"]][1] += 1
    info["n_strata"] = len(strata)
    return [records[i] for i in c.edit], [records[i] for i in c.control], rows, info
