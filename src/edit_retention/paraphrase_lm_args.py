"""Settings of the language-model paraphrase generator (``paraphrase_lm``): ``LMArgs`` and
the study-config checks the schema cannot make.

Usage::

    from edit_retention.paraphrase_lm_args import LMArgs
    args = LMArgs.from_dict({"n_candidates": 8, "mode": "replace"})
"""
from __future__ import annotations

from dataclasses import dataclass

from .fields import typed_fields
from .io import InputError

MODES = ("add", "replace")
EVALUATE_FROM = ("templates", "all")
MAX_NEW_TOKENS_CAP = 128


@dataclass(frozen=True)
class LMArgs:
    """Settings of the lm generator (the study config's ``paraphrase.lm`` less ``model``)."""
    n_candidates: int = 8        # sampled continuations per record
    max_new_tokens: int = 32     # per continuation, at most MAX_NEW_TOKENS_CAP
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0                # sampling seed (the split has its own, paraphrase.seed)
    batch_size: int = 8          # records per generate call (rows: batch_size * n_candidates)
    mode: str = "add"            # add | replace: the record's hand-written templates
    evaluate_from: str = "templates"   # templates | all: where held-out templates come from

    @classmethod
    def from_dict(cls, d: dict, where: str = "paraphrase.lm") -> "LMArgs":
        out = typed_fields(cls, d, where)
        args = cls(**out)
        args.check(where)
        return args

    def check(self, where: str = "paraphrase.lm") -> None:
        bad = None
        if self.n_candidates < 1:
            bad = f"key 'n_candidates' must be >= 1, got {self.n_candidates}"
        elif not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_CAP:
            bad = f"key 'max_new_tokens' must be in 1..{MAX_NEW_TOKENS_CAP}, got {self.max_new_tokens}"
        elif not self.temperature > 0:
            bad = f"key 'temperature' must be > 0, got {self.temperature}"
        elif not 0 < self.top_p <= 1:
            bad = f"key 'top_p' must be in (0, 1], got {self.top_p}"
        elif self.batch_size < 1:
            bad = f"key 'batch_size' must be >= 1, got {self.batch_size}"
        elif self.mode not in MODES:
            bad = f"key 'mode' must be one of {', '.join(MODES)}, got {self.mode!r}"
        elif self.evaluate_from not in EVALUATE_FROM:
            bad = f"key 'evaluate_from' must be one of {', '.join(EVALUATE_FROM)}, got {self.evaluate_from!r}"
        if bad:
            raise InputError(f"{where}: {bad}")


def check_paraphrase_config(para: dict, models: dict, where: str = "config") -> None:
    """The checks the schema cannot make: the lm generator names a model of the study."""
    if para.get("generator", "template") != "lm":
        return
    lm = para.get("lm")
    if not isinstance(lm, dict) or "model" not in lm:
        raise InputError(f"{where}: paraphrase.lm.model: generator 'lm' needs paraphrase.lm.model "
                         f"(a key of models: {', '.join(sorted(models))})")
    if lm["model"] not in models:
        raise InputError(f"{where}: paraphrase.lm.model: unknown model {lm['model']!r} "
                         f"(known: {', '.join(sorted(models))})")
    LMArgs.from_dict({k: v for k, v in lm.items() if k != "model"}, where=f"{where}: paraphrase.lm")
