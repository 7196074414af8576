"""evaluate_base / evaluate_edited / evaluate_finetuned: a model at one phase -> raw
per-prompt scores of the edited and control facts (JSONL)."""
from __future__ import annotations

from pathlib import Path

from ..editors.regimes import edit_groups, is_single, load_edited
from ..evaluate import evaluate
from ..io import read_jsonl, write_jsonl
from ..records import read_records
from ..single import SINGLE_SCORES, evaluate_single


def run(a) -> None:
    if (Path(a.model) / SINGLE_SCORES).exists():   # single-regime fine-tunes, scored in the job
        write_jsonl(a.out, read_jsonl(Path(a.model) / SINGLE_SCORES))
        return
    model, tok, edit = load_edited(a.model, a.edit, a.device)
    para = {p["case_id"]: p for p in read_jsonl(a.paraphrases)}
    edited, control = read_records(a.edited), read_records(a.control)
    if is_single(edit):
        rows = evaluate_single(model, tok, edited, control, para, edit_groups(edit), a.batch_size,
                               a.generation_tokens)
    else:
        rows = evaluate(model, tok, edited, control, para, a.batch_size, generation_tokens=a.generation_tokens)
    write_jsonl(a.out, rows)
