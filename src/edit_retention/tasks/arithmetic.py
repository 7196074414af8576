"""``math``: grade-school math word problems in the GSM8K format (score: exact match).

Examples are ``{"question", "answer"}``; the answer is a worked solution whose last line
is ``#### <number>`` (GSM8K's format, calculator annotations ``<<a*b=c>>`` included). The
prompt is ``"Question: ...\\nAnswer:"`` and the loss covers the solution only.
Held-out score: ``exact_match``, the share of held-out questions for which the greedy
continuation (``max_new_tokens``) has a ``#### N`` line whose number equals the gold one
(commas and a trailing ".0" ignored), the GSM8K protocol.

Offline default (``{"type": "builtin"}``): multi-step arithmetic word problems from a
seeded generator of the project (names, objects and numbers drawn with ``seed``; eight
problem shapes with one to three steps, worked solutions in GSM8K's style). It needs no
data, cannot mention the facts under study (the filter checks anyway) and is unlimited.

Real data: GSM8K JSONL (``{"type": "file", "path": "gsm8k_train.jsonl", "eval_path":
"gsm8k_test.jsonl"}``) or ``{"type": "hf", "id": "openai/gsm8k", "config": "main",
"eval_split": "test"}``.
"""
from __future__ import annotations

import random
import re

from ..io import InputError
from .base import Task
from .scoring import greedy_generate

NAMES = ("Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Ivy", "Jack", "Kira", "Leo",
         "Mia", "Noah", "Olga", "Pete", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wes", "Zoe")
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "buttons", "cards",
         "beads", "crayons", "candles", "muffins", "balloons", "books", "toy cars")
CONTAINERS = ("box", "bag", "jar", "basket", "crate", "tin")
_ANSWER = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def final_answer(text: str) -> str | None:
    """The number after the first ``####`` ("" -> None), normalised."""
    m = _ANSWER.search(text)
    if not m:
        return None
    s = m.group(1).replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _calc(a, op, b, r) -> str:
    return f"{a} {op} {b} = <<{a}{op}{b}={r}>>{r}"


def _problem(rng: random.Random) -> tuple[str, list[str], int]:
    name, item, box = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CONTAINERS)
    k = rng.randrange(8)
    if k == 0:
        a, b, c = rng.randint(2, 40), rng.randint(2, 9), rng.randint(2, 12)
        t = a + b * c
        return (f"{name} has {a} {item}. {name} buys {b} {box}es of {item} with {c} {item} in each {box}. "
                f"How many {item} does {name} have now?",
                [f"{name} buys {_calc(b, '*', c, b * c)} {item}.", f"{name} now has {_calc(a, '+', b * c, t)} {item}."], t)
    if k == 1:
        b, c = rng.randint(1, 30), rng.randint(1, 30)
        a = b + c + rng.randint(1, 50)
        t = a - b - c
        return (f"{name} had {a} {item}, gave {b} to a friend and lost {c}. How many {item} does {name} have left?",
                [f"{name} gave away and lost {_calc(b, '+', c, b + c)} {item}.",
                 f"{name} has {_calc(a, '-', b + c, t)} {item} left."], t)
    if k == 2:
        a, b = rng.randint(3, 25), rng.randint(2, 15)
        return (f"A {box} holds {a} {item}. How many {item} are in {b} such {box}es?",
                [f"There are {_calc(a, '*', b, a * b)} {item}."], a * b)
    if k == 3:
        a, b, c = rng.randint(5, 30), rng.randint(2, 8), rng.randint(2, 7)
        t = a * b * c
        return (f"{name} earns ${a} per hour and works {b} hours a day. How much does {name} earn in {c} days?",
                [f"Each day {name} earns {_calc(a, '*', b, a * b)} dollars.",
                 f"In {c} days {name} earns {_calc(a * b, '*', c, t)} dollars."], t)
    if k == 4:
        b, q = rng.randint(2, 12), rng.randint(2, 15)
        a = b * q
        return (f"{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?",
                [f"Each friend gets {_calc(a, '/', b, q)} {item}."], q)
    if k == 5:
        a, q = rng.randint(5, 40), rng.randint(2, 12)
        b = a * q
        return (f"{name} reads {a} pages a day. How many days does {name} need to read a book of {b} pages?",
                [f"{name} needs {_calc(b, '/', a, q)} days."], q)
    if k == 6:
        a, b, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 20)
        other = rng.choice([n for n in NAMES if n != name])
        t = a + (a + b) + c
        return (f"{name} has {a} {item}. {other} has {b} more {item} than {name}, and a teacher gives them {c} more "
                f"{item} to share. How many {item} do they have together?",
                [f"{other} has {_calc(a, '+', b, a + b)} {item}.",
                 f"Together they have {_calc(a, '+', a + b, 2 * a + b)} {item}.",
                 f"With the teacher's {item} they have {_calc(2 * a + b, '+', c, t)} {item}."], t)
    a, b = rng.randint(2, 9), rng.randint(3, 20)
    c = rng.randint(1, a * b - 1)
    t = a * b - c
    return (f"{name} bakes {a} trays of {item} with {b} on each tray and sells {c} of them. "
            f"How many {item} are left?",
            [f"{name} bakes {_calc(a, '*', b, a * b)} {item}.", f"{_calc(a * b, '-', c, t)} {item} are left."], t)


class Math(Task):
    type = "math"
    metric = "exact_match"
    fields = ("question", "answer")

    def normalise(self, row: dict, where: str) -> dict:
        ex = super().normalise(row, where)
        if final_answer(ex["answer"]) is None:
            raise InputError(f"{where}: field 'answer' has no final answer after '####': {ex['answer'][-80:]!r}")
        return ex

    def prompt_response(self, tok, ex: dict) -> tuple[str, str]:
        return f"Question: {ex['question']}\nAnswer:", " " + ex["answer"]

    def task_score(self, model, tok, examples, args, loss: float) -> float:
        prompts = [self.prompt_response(tok, ex)[0] for ex in examples]
        outs = greedy_generate(model, tok, prompts, args.max_new_tokens, args.batch_size)
        hits = [final_answer(o) == final_answer(ex["answer"]) for o, ex in zip(outs, examples)]
        return sum(hits) / max(len(hits), 1)

    def builtin(self, source: dict, n: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for _ in range(int(n * 1.3) + 20):   # margin for duplicates
            q, steps, t = _problem(rng)
            out.append({"question": q, "answer": "\n".join(steps) + f"\n#### {t}"})
        return out
