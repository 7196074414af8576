"""build_corpus: the unrelated-text corpus (train / eval passages), filtered against the facts."""
from __future__ import annotations

from ..corpus import build_corpus
from ..io import write_json, write_jsonl
from ..records import read_records


def run(a) -> None:
    out = build_corpus(a.source, read_records(a.records), a.n_train, a.n_eval, a.seed)
    write_jsonl(a.out_train, [{"text": t} for t in out["train"]])
    write_jsonl(a.out_eval, [{"text": t} for t in out["eval"]])
    if a.out_meta:
        write_json(a.out_meta, out["meta"])
