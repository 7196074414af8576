"""``causal_lm``: unstructured language modelling on unrelated text (score: perplexity).

Examples are ``{"text": passage}``. Passages are tokenised, joined with EOS and cut into
fixed-length blocks (the packing of HF ``run_clm.py``); every token is predicted. The
held-out score is the perplexity of the first ``eval_blocks`` held-out blocks.

Sources are the corpus sources (``corpus.SOURCES``: ``python_docs``, the offline default;
``text_file``, e.g. WikiText; ``jsonl`` with a text ``field``), plus ``hf`` ({id, config,
split, revision, field}; held-out passages come from the same split, as in a corpus).
Without a ``source`` in the study config, a causal_lm task trains on the study's corpus
(``grid.corpus``), which the layer statistics also read.
"""
from __future__ import annotations

import torch

from ..fields import check_source_keys
from ..io import InputError, write_jsonl
from .base import Task
from .data import load_hf_rows
from .scoring import eval_nll, perplexity

HF_KEYS = ("id", "config", "split", "revision", "field")   # an hf source's keys besides type


def pack_blocks(tok, texts: list[str], seq_len: int) -> torch.Tensor:
    """Tokenise, join with EOS, and cut into (n_blocks, seq_len) token blocks."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tok(t, add_special_tokens=False)["input_ids"])
        ids.append(tok.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise InputError(f"fine-tuning data: {len(ids)} tokens are fewer than one block of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def _lm_tensors(blocks: torch.Tensor) -> dict:
    return {"input_ids": blocks, "labels": blocks, "attention_mask": torch.ones_like(blocks)}


class CausalLM(Task):
    type = "causal_lm"
    metric = "eval_perplexity"
    higher_is_better = False
    fields = ("text",)

    def train_tensors(self, tok, texts, args) -> dict:
        return _lm_tensors(pack_blocks(tok, _as_texts(texts), args.seq_len))

    def eval_data(self, tok, texts, args):
        blocks = pack_blocks(tok, _as_texts(texts), args.seq_len)[: args.eval_blocks]
        return None, _lm_tensors(blocks)

    def score(self, model, tok, eval_data, args) -> dict:
        _, tensors = eval_data
        loss = eval_nll(model, tensors, args.batch_size)
        return {"eval_loss": loss, "eval_perplexity": perplexity(loss), "eval_samples": len(tensors["input_ids"])}

    def source_keys(self) -> dict[str, tuple[str, ...]]:
        """The corpus sources (``corpus.SOURCE_KEYS``) and ``hf``."""
        from ..corpus import SOURCE_KEYS

        return {**SOURCE_KEYS, "hf": HF_KEYS}

    def build_data(self, source: dict, records: list[dict], n_train: int, n_eval: int, seed: int) -> dict:
        from ..corpus import build_corpus, pack, paragraphs_of

        if check_source_keys(source, self.source_keys(), "task causal_lm source", "task source") == "hf":
            if not isinstance(source.get("id"), str):
                raise InputError("task causal_lm source: type 'hf' needs 'id'")
            field = source.get("field", "text")
            docs = [r.get(field) for r in load_hf_rows(source, source.get("split", "train"))]
            passages = [p for d in docs if isinstance(d, str) for p in pack(paragraphs_of(d, docstring=False))]
            # reuse the corpus filter/split on the passages through its jsonl path
            import tempfile
            from pathlib import Path
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "passages.jsonl"
                write_jsonl(path, ({"text": p} for p in passages))
                out = build_corpus({"type": "jsonl", "path": str(path), "field": "text"}, records, n_train, n_eval, seed)
            out["meta"]["source"] = source
        else:
            out = build_corpus(source, records, n_train, n_eval, seed)
        return {"train": [{"text": t} for t in out["train"]], "eval": [{"text": t} for t in out["eval"]],
                "meta": {"task_type": self.type, **out["meta"]}}


def _as_texts(rows) -> list[str]:
    return [r["text"] if isinstance(r, dict) else r for r in rows]
