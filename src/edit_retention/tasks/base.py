"""The interface every downstream task implements (one subclass per module; ``tasks.TASKS``).

Data sources and the fact filter: ``data``; encoding examples into tensors: ``encoding``;
held-out loss, generation and perplexity: ``scoring``.
"""
from __future__ import annotations

from ..io import InputError
from .data import SOURCE_KEYS
from .encoding import encode_supervised
from .scoring import eval_nll


class Task:
    """Interface of a task type (one subclass per module; see ``tasks.TASKS``)."""

    type: str = ""
    metric: str = ""                 # protocol name of the downstream score
    higher_is_better: bool = True
    fields: tuple[str, ...] = ()     # normalised example fields
    builtin_keys: tuple[str, ...] = ()  # extra keys a builtin source accepts

    # -- data
    def source_keys(self) -> dict[str, tuple[str, ...]]:
        """Source type -> the keys it accepts besides ``type`` (``data.SOURCE_KEYS``, the
        column renaming ``fields``, and a builtin source's ``builtin_keys``)."""
        return {kind: (*keys, *(self.builtin_keys if kind == "builtin" else ()), "fields")
                for kind, keys in SOURCE_KEYS.items()}

    def builtin(self, source: dict, n: int, seed: int) -> list[dict]:
        raise NotImplementedError

    def normalise(self, row: dict, where: str) -> dict:
        """A raw row in the data set's original format -> an example (checked)."""
        out = {}
        for f in self.fields:
            if f not in row or row[f] is None:
                raise InputError(f"{where}: missing field {f!r}")
            if not isinstance(row[f], str):
                raise InputError(f"{where}: field {f!r} must be a string, got {row[f]!r}")
            out[f] = row[f]
        return out

    def text_of(self, ex: dict) -> str:
        """All of an example's text (for the fact filter)."""
        return "\n".join(str(ex[f]) for f in self.fields)

    def usable(self, ex: dict) -> bool:
        return all(str(ex[f]).strip() for f in self.fields)

    # -- training and scoring
    def prompt_response(self, tok, ex: dict) -> tuple[str, str]:
        raise NotImplementedError

    def train_tensors(self, tok, examples: list, args) -> dict:
        return encode_supervised(self, tok, examples, args.seq_len, where=f"{self.type} training data")

    def eval_data(self, tok, examples: list, args):
        ex = examples[: args.eval_examples]
        return ex, encode_supervised(self, tok, ex, args.seq_len, where=f"{self.type} held-out data")

    def score(self, model, tok, eval_data, args) -> dict:
        """{"eval_loss": response-token NLL, self.metric: value, "eval_samples": n}."""
        examples, tensors = eval_data
        loss = eval_nll(model, tensors, args.batch_size)
        return {"eval_loss": loss, self.metric: self.task_score(model, tok, examples, args, loss),
                "eval_samples": len(examples)}

    def task_score(self, model, tok, examples, args, loss: float) -> float:
        raise NotImplementedError
