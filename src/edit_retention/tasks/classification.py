"""``classification``: sentiment in the SST-2 format, trained as generation of a label word.

Examples are ``{"sentence", "label"}`` with label 0 (negative) or 1 (positive) (SST-2's
TSV has a header ``sentence<TAB>label``; the HF copy has the same columns). The prompt is
``"Review: <sentence>\\nSentiment:"`` and the target is the label word (``LABEL_WORDS``:
" negative" / " positive") + EOS; the loss covers those tokens only. Held-out score:
``label_accuracy``, the share of held-out sentences whose true label word gets the higher
teacher-forced log-prob of the two (a ranking classifier: no free generation).

Offline default (``{"type": "builtin"}``): short movie-review sentences from a seeded
template generator of the project with hand-written positive and negative word lists
(``POSITIVE``/``NEGATIVE``), including negations ("not dull" is positive) and contrast
clauses ("..., but ..." takes the label of the second clause), so the task is not a pure
lexicon lookup. No pinned package ships a sentiment lexicon (NLTK's VADER is a download,
not package data), and ~80 words do not justify a new dependency.

Real data: ``{"type": "file", "path": "alps_sst2_train.tsv", "eval_path":
"alps_sst2_dev.tsv"}`` or ``{"type": "hf", "id": "stanfordnlp/sst2", "eval_split":
"validation"}``.
"""
from __future__ import annotations

import random

import torch

from ..io import InputError
from .base import Task
from .encoding import prompt_ids

LABEL_WORDS = (" negative", " positive")
POSITIVE = ("wonderful", "delightful", "charming", "brilliant", "moving", "funny", "gripping", "beautiful",
            "clever", "warm", "engaging", "touching", "superb", "fresh", "witty", "stunning", "heartfelt",
            "inventive", "lively", "graceful", "thrilling", "smart", "tender", "excellent", "joyful")
NEGATIVE = ("dull", "tedious", "boring", "clumsy", "predictable", "bland", "messy", "lifeless", "shallow",
            "tiresome", "awkward", "forgettable", "flat", "stale", "sloppy", "pointless", "cheap", "hollow",
            "silly", "overlong", "lazy", "muddled", "weak", "grating", "joyless")
NOUNS = ("film", "movie", "story", "script", "plot", "acting", "soundtrack", "dialogue", "cast", "ending",
         "pacing", "direction", "camera work", "humor", "lead performance", "second half", "opening scene")
ADVERBS = ("", "", "really ", "quite ", "utterly ", "surprisingly ", "truly ", "rather ")


def _clause(rng: random.Random, label: int) -> str:
    noun, adv = rng.choice(NOUNS), rng.choice(ADVERBS)
    if rng.random() < 0.25:   # negated word of the other polarity
        word = rng.choice(NEGATIVE if label else POSITIVE)
        return f"the {noun} is {rng.choice(['not', 'never', 'hardly'])} {word}"
    word = rng.choice(POSITIVE if label else NEGATIVE)
    return f"the {noun} is {adv}{word}"


class Classification(Task):
    type = "classification"
    metric = "label_accuracy"
    fields = ("sentence", "label")

    def normalise(self, row: dict, where: str) -> dict:
        for f in self.fields:
            if f not in row or row[f] is None:
                raise InputError(f"{where}: missing field {f!r}")
        if not isinstance(row["sentence"], str):
            raise InputError(f"{where}: field 'sentence' must be a string, got {row['sentence']!r}")
        label = row["label"]
        if isinstance(label, str) and label.strip() in ("0", "1"):
            label = int(label.strip())
        if isinstance(label, str) and " " + label.strip().lower() in LABEL_WORDS:
            label = LABEL_WORDS.index(" " + label.strip().lower())
        if isinstance(label, bool) or label not in (0, 1):
            raise InputError(f"{where}: field 'label' must be 0 or 1 (negative/positive), got {row['label']!r}")
        return {"sentence": row["sentence"].strip(), "label": int(label)}

    def text_of(self, ex: dict) -> str:
        return ex["sentence"]

    def usable(self, ex: dict) -> bool:
        return bool(ex["sentence"].strip())

    def prompt_response(self, tok, ex: dict) -> tuple[str, str]:
        return f"Review: {ex['sentence']}\nSentiment:", LABEL_WORDS[ex["label"]]

    @torch.no_grad()
    def task_score(self, model, tok, examples, args, loss: float) -> float:
        from ..evaluate import _score_batch, _pad_id

        words = [tok(w, add_special_tokens=False)["input_ids"] for w in LABEL_WORDS]
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        hits = []
        try:
            for i in range(0, len(examples), args.batch_size):
                chunk = examples[i: i + args.batch_size]
                seqs = [(prompt_ids(tok, self.prompt_response(tok, ex)[0]), w) for ex in chunk for w in words]
                scored = _score_batch(model, seqs, _pad_id(tok), dev)
                for j, ex in enumerate(chunk):
                    lp = [scored[2 * j + k][0] / scored[2 * j + k][1] for k in range(2)]
                    hits.append(int(lp[1] > lp[0]) == ex["label"])
        finally:
            model.train(was)
        return sum(hits) / max(len(hits), 1)

    def builtin(self, source: dict, n: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for _ in range(int(n * 1.3) + 20):
            label = rng.randrange(2)
            if rng.random() < 0.3:   # contrast: the second clause decides
                s = f"{_clause(rng, 1 - label)}, but {_clause(rng, label)}"
            else:
                s = _clause(rng, label)
            out.append({"sentence": s[0].upper() + s[1:] + ".", "label": label})
        return out
