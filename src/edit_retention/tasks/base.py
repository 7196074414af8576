"""What every downstream task shares: the Task interface, data sources, encoding, scoring.

A task's data are *examples* (dicts in the task's own normalised fields, e.g. GSM8K's
``question``/``answer``). ``build_task_data`` turns a source into train and held-out
examples:

    {"type": "builtin", ...}                         the task's offline default generator
    {"type": "file", "path": P, "eval_path": Q}      a local file in the data set's original
                                                     format (.json list, .jsonl, .tsv/.csv with
                                                     a header); eval_path (optional) is the
                                                     held-out split, else n_eval rows of P
    {"type": "hf", "id": ID, "config": C, "split": "train", "eval_split": "test",
     "revision": R}                                  the Hugging Face hub via ``datasets`` (not a
                                                     dependency of the default study; never
                                                     called by the tests)

``fields`` (optional, every source type) renames columns: {"sentence": "text"} reads the
task's ``sentence`` field from a column called ``text``.

Every example whose text mentions (whole words, any case) a fact's subject, true object
or new object is dropped (``corpus.mention_filter``: the task must not teach or unteach
the facts under study), then duplicates; the rest is shuffled with ``seed``; the first
``n_eval`` are held out (unless an eval split is given) and the next ``n_train`` train.
A missing field, a bad value or zero usable rows is an ``InputError`` naming the file,
the record and the field.

A supervised example is encoded as prompt tokens followed by response tokens (+ EOS);
the loss (labels) covers the response only.
"""
from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import torch

from ..io import InputError, read_jsonl

IGNORE = -100
SOURCE_KEYS = {
    "builtin": set(),
    "file": {"path", "eval_path"},
    "hf": {"id", "config", "split", "eval_split", "revision"},
}


class Task:
    """Interface of a task type (one subclass per module; see ``tasks.TASKS``)."""

    type: str = ""
    metric: str = ""                 # protocol name of the downstream score
    higher_is_better: bool = True
    fields: tuple[str, ...] = ()     # normalised example fields
    builtin_keys: tuple[str, ...] = ()  # extra keys a builtin source accepts

    # -- data
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


# ---------------------------------------------------------------- reading sources

def read_rows(path: str | Path) -> list[dict]:
    """Rows of a local file in its original format: JSON list, JSONL, TSV or CSV with header."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"task data: file {str(path)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(p)
    elif suffix == ".json":
        try:
            rows = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: not valid JSON (line {e.lineno}): {e.msg}") from e
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):
            rows = rows["data"]
        if not isinstance(rows, list):
            raise InputError(f"{p}: expected a JSON list of records")
    elif suffix in (".tsv", ".csv"):
        with open(p, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE
                                       if suffix == ".tsv" else csv.QUOTE_MINIMAL))
    else:
        raise InputError(f"{p}: unknown file format {suffix!r} (known: .json, .jsonl, .tsv, .csv)")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise InputError(f"{p}: record {i}: expected an object, got {type(r).__name__}")
    return rows


def load_hf_rows(source: dict, split: str) -> list[dict]:
    """Rows of a Hugging Face hub data set split (needs the ``datasets`` package)."""
    try:
        import datasets
    except ImportError as e:
        raise InputError("task source 'hf' needs the `datasets` package (pip install datasets); "
                         "it is not a dependency of the default study") from e
    kw = {"revision": source["revision"]} if source.get("revision") else {}
    ds = datasets.load_dataset(source["id"], source.get("config"), split=split, **kw)
    return [dict(r) for r in ds]


def check_source(task: Task, source: dict, where: str) -> None:
    if not isinstance(source, dict) or source.get("type") not in SOURCE_KEYS:
        kind = source.get("type") if isinstance(source, dict) else source
        raise InputError(f"{where}: unknown task source type {kind!r} (known: {', '.join(SOURCE_KEYS)})")
    allowed = {"type", "fields"} | SOURCE_KEYS[source["type"]]
    if source["type"] == "builtin":
        allowed |= set(task.builtin_keys)
    unknown = sorted(set(source) - allowed)
    if unknown:
        raise InputError(f"{where}: task source {source['type']!r}: unknown field(s) {', '.join(map(repr, unknown))} "
                         f"(allowed: {', '.join(sorted(allowed))})")
    if source["type"] == "file" and not isinstance(source.get("path"), str):
        raise InputError(f"{where}: task source 'file' needs 'path'")
    if source["type"] == "hf" and not isinstance(source.get("id"), str):
        raise InputError(f"{where}: task source 'hf' needs 'id'")
    if "fields" in source and not (isinstance(source["fields"], dict)
                                   and all(isinstance(v, str) for v in source["fields"].values())):
        raise InputError(f"{where}: task source field 'fields' must map task fields to column names")


def _normalise_rows(task: Task, rows: list[dict], fields: dict, name: str) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        if fields:
            row = {**row, **{k: row.get(col) for k, col in fields.items()}}
        out.append(task.normalise(row, f"{name}: record {i}"))
    return out


def source_examples(task: Task, source: dict, n_hint: int, seed: int) -> tuple[list[dict], list[dict] | None, str]:
    """(examples, held-out examples or None, a name for messages)."""
    kind, fields = source["type"], source.get("fields") or {}
    if kind == "builtin":
        return task.builtin(source, n_hint, seed), None, f"builtin {task.type} generator"
    if kind == "file":
        main = _normalise_rows(task, read_rows(source["path"]), fields, source["path"])
        held = (_normalise_rows(task, read_rows(source["eval_path"]), fields, source["eval_path"])
                if source.get("eval_path") else None)
        return main, held, source["path"]
    name = f"hf:{source['id']}"
    main = _normalise_rows(task, load_hf_rows(source, source.get("split", "train")), fields, name)
    held = (_normalise_rows(task, load_hf_rows(source, source["eval_split"]), fields, f"{name}[{source['eval_split']}]")
            if source.get("eval_split") else None)
    return main, held, name


def build_task_data(task: Task, source: dict, records: list[dict], n_train: int, n_eval: int,
                    seed: int = 0) -> dict:
    """{"train": [...], "eval": [...], "meta": {...}} for a task (see the module docstring)."""
    from ..corpus import filter_terms, mention_filter

    check_source(task, source, f"task {task.type}")
    for key, n in (("n_train", n_train), ("n_eval", n_eval)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"task {task.type}: {key} must be an integer >= 1, got {n!r}")
    examples, held, name = source_examples(task, source, n_train + n_eval, seed)
    mentions = mention_filter(filter_terms(records))
    stats = {}

    def clean(rows, label):
        seen, kept, dropped, unusable = set(), [], 0, 0
        for ex in rows:
            if not task.usable(ex):
                unusable += 1
                continue
            text = task.text_of(ex)
            if mentions(text):
                dropped += 1
                continue
            if text not in seen:
                seen.add(text)
                kept.append(ex)
        stats[label] = {"n_rows": len(rows), "n_unusable": unusable, "n_dropped_by_filter": dropped,
                        "n_usable": len(kept)}
        if not kept:
            raise InputError(f"task {task.type}: {name}{'' if label == 'main' else ' (eval split)'}: zero usable "
                             f"rows ({len(rows)} read, {unusable} empty, {dropped} mention a fact)")
        return kept

    kept = clean(examples, "main")
    random.Random(seed).shuffle(kept)
    if held is not None:
        held_kept = clean(held, "eval")
        random.Random(seed).shuffle(held_kept)
        evals = held_kept[:n_eval]
        # an example in both splits stays only in the held-out one
        held_texts = {task.text_of(e) for e in evals}
        train = [e for e in kept if task.text_of(e) not in held_texts][:n_train]
    else:
        evals, train = kept[:n_eval], kept[n_eval:n_eval + n_train]
    if len(train) < n_train or len(evals) < n_eval:
        raise InputError(f"task {task.type}: {name}: {len(train)} training and {len(evals)} held-out usable "
                         f"examples, but n_train={n_train}, n_eval={n_eval} were asked for ({stats})")
    meta = {"task_type": task.type, "source": source, "seed": seed, "n_train": n_train, "n_eval": n_eval,
            **{f"{k}_{label}": v for label, s in stats.items() for k, v in s.items()}}
    return {"train": train, "eval": evals, "meta": meta}


def check_examples(task: Task, rows: list[dict], path: str) -> list[dict]:
    """Examples read back from a task-data JSONL (checked, in order)."""
    out = [task.normalise(r, f"{path}: record {i}") for i, r in enumerate(rows)]
    if not out:
        raise InputError(f"{path}: zero examples")
    return out


# ---------------------------------------------------------------- encoding and scoring

def encode_supervised(task: Task, tok, examples: list[dict], max_len: int, where: str) -> dict:
    """Right-padded (N, L) input_ids / labels (-100 outside the response) / attention_mask.

    The response is cut to fit ``max_len``; an example whose prompt alone fills
    ``max_len`` is dropped. No example left: InputError.
    """
    seqs = []
    for ex in examples:
        prompt, response = task.prompt_response(tok, ex)
        p = prompt_ids(tok, prompt)
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(p) >= max_len:
            continue
        seqs.append((p, r[: max_len - len(p)]))
    if not seqs:
        raise InputError(f"{where}: no example fits seq_len={max_len} with at least one response token "
                         f"({len(examples)} examples; raise seq_len)")
    width = max(len(p) + len(r) for p, r in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, r) in enumerate(seqs):
        n = len(p) + len(r)
        ids[i, :n] = torch.tensor(p + r)
        labels[i, len(p):n] = torch.tensor(r)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def prompt_ids(tok, prompt: str) -> list[int]:
    """Prompt tokens: with the tokenizer's special tokens, unless the prompt is chat-templated
    text that carries its own."""
    special = not (getattr(tok, "chat_template", None) and tok.bos_token and prompt.startswith(tok.bos_token))
    return tok(prompt, add_special_tokens=special)["input_ids"]


def trim(batch: dict) -> dict:
    """Cut right padding common to a whole batch."""
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in batch.items()}


@torch.no_grad()
def eval_nll(model, tensors: dict, batch_size: int) -> float:
    """Mean NLL per predicted (label != -100) token over the whole set."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for i in range(0, len(tensors["input_ids"]), batch_size):
            b = trim({k: v[i: i + batch_size].to(dev) for k, v in tensors.items()})
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            tgt = b["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                     ignore_index=IGNORE, reduction="sum")
            total += loss.item()
            count += int((tgt != IGNORE).sum())
    finally:
        model.train(was)
    return total / max(count, 1)


@torch.no_grad()
def greedy_generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches), decoded without specials."""
    was, side = model.training, tok.padding_side
    model.eval()
    tok.padding_side = "left"
    dev = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = [prompt_ids(tok, p) for p in prompts[i: i + batch_size]]
            width = max(map(len, chunk))
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=dev)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=dev)
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=tok.eos_token_id)
            out += tok.batch_decode(gen[:, width:], skip_special_tokens=True)
    finally:
        tok.padding_side = side
        model.train(was)
    return out


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
