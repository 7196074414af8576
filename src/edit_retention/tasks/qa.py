"""``qa``: closed-book question answering in the NQ-open format (score: exact match).

Examples are ``{"question", "answer": [acceptable answers]}`` (NQ-open's fields). The
prompt is ``"Q: <question>?\\nA:"``; the target is the first answer + EOS. Held-out
score: ``exact_match``, the share of held-out questions whose greedy answer (up to
``max_new_tokens``, cut at the first newline) equals any acceptable answer after SQuAD
normalisation (lower case, no punctuation, no articles, single spaces).

Offline default (``{"type": "builtin"}``): questions about Python's standard library from
``stdlib.py`` ("which python standard library module provides the function dedent" ->
["textwrap"]; only function names defined in exactly one module) and seeded arithmetic
questions ("what is 17 plus 25" -> ["42"]). Closed-book, factual,
and unrelated to the geography facts under study.

Real data: NQ-open JSONL (``{"type": "file", "path": "nq_open_dev.jsonl"}``) or
``{"type": "hf", "id": "google-research-datasets/nq_open", "eval_split": "validation"}``.
"""
from __future__ import annotations

import random
import re
import string
from collections import Counter

from ..io import InputError
from .base import Task
from .scoring import greedy_generate


def normalise_answer(s: str) -> str:
    s = s.lower()
    s = "".join(c for c in s if c not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


class QA(Task):
    type = "qa"
    metric = "exact_match"
    fields = ("question", "answer")

    def normalise(self, row: dict, where: str) -> dict:
        for f in self.fields:
            if f not in row or row[f] is None:
                raise InputError(f"{where}: missing field {f!r}")
        if not isinstance(row["question"], str):
            raise InputError(f"{where}: field 'question' must be a string")
        ans = row["answer"]
        if isinstance(ans, str):
            ans = [ans]
        if not isinstance(ans, list) or not all(isinstance(a, str) for a in ans):
            raise InputError(f"{where}: field 'answer' must be a list of strings, got {row['answer']!r}")
        return {"question": row["question"], "answer": ans}

    def text_of(self, ex: dict) -> str:
        return ex["question"] + "\n" + "\n".join(ex["answer"])

    def usable(self, ex: dict) -> bool:
        return bool(ex["question"].strip() and any(a.strip() for a in ex["answer"]))

    def prompt_response(self, tok, ex: dict) -> tuple[str, str]:
        q = ex["question"].strip().rstrip("?")
        return f"Q: {q}?\nA:", " " + next(a for a in ex["answer"] if a.strip()).strip()

    def task_score(self, model, tok, examples, args, loss: float) -> float:
        prompts = [self.prompt_response(tok, ex)[0] for ex in examples]
        outs = greedy_generate(model, tok, prompts, args.max_new_tokens, args.batch_size)
        hits = []
        for o, ex in zip(outs, examples):
            pred = normalise_answer(o.strip().split("\n")[0])
            hits.append(pred in {normalise_answer(a) for a in ex["answer"]})
        return sum(hits) / max(len(hits), 1)

    def builtin(self, source: dict, n: int, seed: int) -> list[dict]:
        from .stdlib import stdlib_functions

        rng = random.Random(seed)
        funcs = stdlib_functions()
        count = Counter(f["name"] for f in funcs)
        out = [{"question": f"which python standard library module provides the function {f['name']}",
                "answer": [f["module"]]} for f in funcs if count[f["name"]] == 1 and f["module"] != "builtins"]
        ops = (("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b))
        for _ in range(max(n - len(out), len(out) // 2) + 20):
            name, fn = rng.choice(ops)
            a, b = rng.randint(2, 99), rng.randint(2, 30)
            out.append({"question": f"what is {a} {name} {b}", "answer": [str(fn(a, b))]})
        rng.shuffle(out)
        return out
