"""Language-model paraphrase generator: a causal LM rewrites each fact's prompt.

Usage::

    from edit_retention.paraphrase_lm import LMArgs, lm_paraphrases
    rows, report = lm_paraphrases(model, tok, records, n_eval=2, split_seed=0,
                                  args=LMArgs(n_candidates=8))
    # rows: [{"case_id", "augment", "evaluate", "generated", "filter"}, ...]
    # report: totals (sequences, candidates, kept, counts per rejection reason)

Generation. Each record's prompt is filled with its subject and the object left out
("The capital of China is ..."); the model is asked, with a few-shot prompt, to say the
same sentence beginning in other words. Tokenizers with a chat template get the
examples as user/assistant turns; others get a plain "Original: ... / Rewritten: ..."
prompt and stop at the first newline. ``n_candidates`` continuations are sampled per
record (temperature, top-p), ``max_new_tokens`` at most, in left-padded batches of
``batch_size`` records. Every continuation has its own ``torch.Generator``, seeded by
``(seed, case_id, j)``, and draws its tokens on the CPU, so a record's candidates do not
depend on the other records in the file or on the batch size (up to the float rounding
that padding can change in the model's logits) and are the same on CPU and GPU for the
same logits.

Filter (pure functions, each rejection counted under its reason). Each line of a
continuation is one candidate. ``normalise`` collapses whitespace and strips quotes,
list numbering and labels ("Rewritten:"); ``strip_object_slot`` removes what marks
the missing object at the end ("...", ":", "___", "[blank]"). A candidate is kept when
it is not empty (``empty``), was not cut off by ``max_new_tokens`` (``truncated``), does
not name a subject of the prompt's examples (``echoes_example``), has none of {}[]<>
(``brackets``: "[Region Name]"), contains the subject exactly once as a whole word
(``no_subject``, ``subject_repeated``), does not contain the true or the new object
outside the subject (``contains_object``), does not end a sentence or clause with
. ? ! ; , (``ends_sentence``), does not end with the subject (``ends_with_subject``),
has MIN_WORDS..MAX_WORDS words (``too_short``, ``too_long``), is not the main prompt with
words after it (``extends_prompt``: "The official language of China is Mandarin" names
an object the record does not know), differs from the main prompt (``same_as_prompt``)
and from the candidates kept before it (``duplicate``), comparing lower case with
whitespace runs collapsed. The subject is then replaced by ``{}``: the kept candidates are templates
like the records' own ``paraphrase_prompts``.

Split (``merge_split``). ``mode: add`` pools the generated templates with the record's
hand-written ones, ``mode: replace`` uses the generated ones instead. With
``evaluate_from: templates`` (the default) the held-out evaluation templates are the
ones the template generator holds out (same seed, same choice), and generated
templates only ever augment: evaluation stays comparable across generators. A
generated template equal to a held-out one, or in ``add`` mode to any hand-written
one, is dropped (``in_templates``). With
``evaluate_from: all`` the pool (hand-written + generated, or generated only) is split
as the template generator splits a record. Either way the augmentation and evaluation
lists never overlap and neither contains the main prompt; in ``add`` mode the pooled
augmentation list is shuffled with a seeded generator, so that ``augment[:k]`` mixes
hand-written and generated templates.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from .fields import typed_fields
from .io import InputError
from .paraphrase import distinct_paraphrases, split_record, template_key
from .records import fill

MODES = ("add", "replace")
EVALUATE_FROM = ("templates", "all")
MAX_NEW_TOKENS_CAP = 128
MIN_WORDS, MAX_WORDS = 3, 24
# Rejection reasons in the order they are tested (the first that applies is counted).
REASONS = ("empty", "truncated", "echoes_example", "brackets", "no_subject", "subject_repeated",
           "contains_object", "ends_sentence", "ends_with_subject", "too_short", "too_long", "extends_prompt",
           "same_as_prompt", "duplicate", "in_templates")


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


# ---------------------------------------------------------------- pure post-processing

_QUOTES = "\"“”„«»‹›`"
_SINGLE_QUOTES = "'‘’"
_NUMBERING = re.compile(r"^(?:\(?\d{1,2}[.):]|[-*•])\s+")
_LABEL = re.compile(r"^(?:rewritten|rewrite|rephrased|paraphrased?|paraphrases|answer|output|original|"
                    r"sentence beginning|sentence|new sentence)\s*\d*\s*:\s*", re.IGNORECASE)
_PLACEHOLDER = r"[\[(<]\s*(?:blank|mask|object|answer|missing|x|\.\.\.|_+)\s*[\])>]"
_SLOT = re.compile(r"(?:\.\.\.+|…|_+|:|–|—|\s-+|" + _PLACEHOLDER + r")$", re.IGNORECASE)
_SENTENCE_END = ".?!;,"


def normalise(text: str) -> str:
    """Whitespace collapsed; surrounding quotes, list numbering and labels removed."""
    s = " ".join(text.split())
    while True:
        before = s
        s = _NUMBERING.sub("", s)
        s = _LABEL.sub("", s)
        s = s.strip(_QUOTES).strip()
        if len(s) >= 2 and s[0] in _SINGLE_QUOTES and s[-1] in _SINGLE_QUOTES:
            s = s[1:-1].strip()
        if s == before:
            return s


def strip_object_slot(text: str) -> str:
    """The candidate without what marks the missing object at its end ("...", ":", "___",
    "[blank]", a dash), and without quotes left around it."""
    s = text.strip()
    while True:
        before = s
        s = _SLOT.sub("", s).rstrip()
        s = s.rstrip(_QUOTES).rstrip()
        if s == before:
            return s


def _word_pattern(phrase: str, flags: int = 0) -> re.Pattern:
    """``phrase`` as a whole word (not inside a longer word: "India" is not in "Indian")."""
    return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", flags)


def to_template(candidate: str, subject: str, objects: Sequence[str]) -> tuple[str | None, str]:
    """(template with "{}" for the subject, "kept") or (None, rejection reason) for one
    normalised, slot-stripped candidate; ``objects`` are the record's true and new objects."""
    if not candidate:
        return None, "empty"
    if any(c in candidate for c in "{}[]<>"):
        return None, "brackets"
    hits = list(_word_pattern(subject).finditer(candidate))
    if not hits:
        return None, "no_subject"
    if len(hits) > 1:
        return None, "subject_repeated"
    m = hits[0]
    template = candidate[: m.start()] + "{}" + candidate[m.end():]
    rest = candidate[: m.start()] + " " + candidate[m.end():]
    for obj in objects:
        if obj.strip() and _word_pattern(obj.strip(), re.IGNORECASE).search(rest):
            return None, "contains_object"
    if template[-1] in _SENTENCE_END:
        return None, "ends_sentence"
    if template.endswith("{}"):
        return None, "ends_with_subject"
    words = len(candidate.split())
    if words < MIN_WORDS:
        return None, "too_short"
    if words > MAX_WORDS:
        return None, "too_long"
    return template, "kept"


def filter_candidates(candidates: Sequence[tuple[str, bool]], record: dict) -> tuple[list[str], Counter]:
    """Templates kept from ``(text, truncated)`` candidates of one record, in order, and the
    count of each outcome ("kept" and the rejection reasons)."""
    counts: Counter = Counter()
    seen = {template_key(record["prompt"])}
    kept = []
    objects = (record["target_true"], record["target_new"])
    own = (record["subject"] + " " + record["prompt"]).lower()
    echoes = [_word_pattern(s) for s, _, _ in EXAMPLES if s.lower() not in own]
    for text, truncated in candidates:
        cand = strip_object_slot(normalise(text))
        if truncated and cand:
            counts["truncated"] += 1
            continue
        if any(p.search(cand) for p in echoes):
            counts["echoes_example"] += 1
            continue
        template, reason = to_template(cand, record["subject"], objects)
        if template is not None:
            k = template_key(template)
            if k.startswith(template_key(record["prompt"]) + " "):
                reason = "extends_prompt"
            elif k == template_key(record["prompt"]):
                reason = "same_as_prompt"
            elif k in seen:
                reason = "duplicate"
            else:
                seen.add(k)
                kept.append(template)
        counts[reason] += 1
    return kept, counts


def continuation_lines(text: str, finished: bool) -> list[tuple[str, bool]]:
    """Candidates of one continuation: its non-empty lines, ``(line, truncated)``; only the
    last line of a continuation that hit ``max_new_tokens`` counts as truncated."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [(ln, not finished and i == len(lines) - 1) for i, ln in enumerate(lines)]


def _dedupe(templates: Sequence[str], exclude: set[str]) -> list[str]:
    """Templates whose key is not in ``exclude`` and does not repeat an earlier one."""
    seen, out = set(exclude), []
    for t in templates:
        if template_key(t) not in seen:
            seen.add(template_key(t))
            out.append(t)
    return out


def merge_split(record: dict, generated: Sequence[str], n_eval: int, seed: int = 0, mode: str = "add",
                evaluate_from: str = "templates") -> tuple[dict, list[str]]:
    """One record's split with its generated templates (module docstring), and the generated
    templates it uses (those equal to the prompt or to a hand-written template it keeps
    are left out)."""
    cid = record["case_id"]
    if mode not in MODES or evaluate_from not in EVALUATE_FROM:
        raise InputError(f"paraphrases: mode {mode!r} / evaluate_from {evaluate_from!r} unknown "
                         f"(modes: {', '.join(MODES)}; evaluate_from: {', '.join(EVALUATE_FROM)})")
    exclude = {template_key(record["prompt"])}
    if evaluate_from == "templates":
        split = split_record(record, n_eval, seed)
        exclude |= {template_key(t) for t in split["evaluate"] + (split["augment"] if mode == "add" else [])}
        gen = _dedupe(generated, exclude)
        if mode == "add":
            split["augment"] = split["augment"] + gen
            random.Random(f"{seed}:{cid}:lm").shuffle(split["augment"])
        else:
            split["augment"] = gen
        return split, gen
    hand = distinct_paraphrases(record) if mode == "add" else []
    gen = _dedupe(generated, exclude | {template_key(t) for t in hand})
    if len(hand) + len(gen) < n_eval:
        what = "hand-written and generated" if mode == "add" else "generated (mode replace)"
        raise InputError(f"paraphrases: case_id {cid!r}: {len(hand) + len(gen)} distinct {what} paraphrases, "
                         f"{n_eval} are needed (held out for evaluation, evaluate_from: all)")
    pooled = {"case_id": cid, "prompt": record["prompt"], "paraphrase_prompts": hand + gen}
    return split_record(pooled, n_eval, seed), gen


# ---------------------------------------------------------------- prompting and sampling

EXAMPLES = (
    ("Anna Lindqvist", "The mother tongue of Anna Lindqvist is", "Anna Lindqvist grew up speaking"),
    ("Orvieto Bridge", "The Orvieto Bridge is located in the country of",
     "The country where the Orvieto Bridge stands is"),
    ("Kestrel Motors", "Kestrel Motors was founded in the city of", "The city where Kestrel Motors was founded is"),
)
INSTRUCTION = ("Rewrite the beginning of this sentence in other words with the same meaning. Keep "
               "\"{subject}\" exactly as written, leave out the missing last word and stop right where "
               "it would go.\n\nSentence beginning: {filled} ...")


def build_prompt(tok, subject: str, filled: str) -> tuple[str, bool]:
    """(prompt text, uses the chat template); the text already holds any special tokens."""
    if getattr(tok, "chat_template", None):
        messages = []
        for s, src, dst in EXAMPLES:
            messages.append({"role": "user", "content": INSTRUCTION.format(subject=s, filled=src)})
            messages.append({"role": "assistant", "content": f"{dst} ..."})
        messages.append({"role": "user", "content": INSTRUCTION.format(subject=subject, filled=filled)})
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), True
    head = ("Each sentence beginning is rewritten in other words with the same meaning; the name is "
            "kept and the rewrite stops where the missing last word goes.\n\n")
    shots = "".join(f"Original: {src} ...\nRewritten: {dst} ...\n\n" for _, src, dst in EXAMPLES)
    return head + shots + f"Original: {filled} ...\nRewritten:", False


def row_seed(seed: int, case_id: str, j: int) -> int:
    """Seed of a record's j-th continuation (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{case_id}:{j}".encode()).digest()[:8], "little") >> 1


def _sampler(seeds: Sequence[int], temperature: float, top_p: float):
    """A logits processor that samples each row's next token with the row's own generator
    and leaves only that token possible (generate then runs greedy)."""
    import torch
    from transformers import LogitsProcessor

    gens = [torch.Generator().manual_seed(s) for s in seeds]

    class SeededSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float().cpu() / temperature, dim=-1)
            if top_p < 1.0:
                sp, idx = probs.sort(dim=-1, descending=True)
                drop = sp.cumsum(-1) - sp > top_p      # tokens after the nucleus
                probs = probs.scatter(-1, idx, sp.masked_fill(drop, 0.0))
            pick = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(gens)])
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(1, pick.to(scores.device), 0.0)

    return SeededSampler()


def _stop_ids(model, tok, plain: bool) -> list[int]:
    ids = set()
    for v in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        ids.update(v if isinstance(v, list) else [v] if v is not None else [])
    if plain:
        nl = tok.encode("\n", add_special_tokens=False)
        if len(nl) == 1:
            ids.add(nl[0])
    return sorted(ids)


def sample_continuations(model, tok, prompts: Sequence[str], seeds: Sequence[Sequence[int]], plain: bool,
                         args: LMArgs) -> list[list[tuple[str, bool]]]:
    """For each prompt, one ``(text, finished)`` per seed: sampled continuations of at most
    ``args.max_new_tokens`` tokens; ``finished`` when a stop token ended them."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    n = len(seeds[0])
    if any(len(s) != n for s in seeds):
        raise ValueError("sample_continuations: every prompt needs the same number of seeds")
    stop = _stop_ids(model, tok, plain)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stop[0]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        # a chat-template text already holds its special tokens
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=plain)
    finally:
        tok.padding_side = side
    dev = next(model.parameters()).device
    ids = enc["input_ids"].repeat_interleave(n, dim=0).to(dev)
    mask = enc["attention_mask"].repeat_interleave(n, dim=0).to(dev)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=args.max_new_tokens, eos_token_id=stop,
                           pad_token_id=pad)
    sampler = _sampler([s for row in seeds for s in row], args.temperature, args.top_p)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg,
                             logits_processor=LogitsProcessorList([sampler]))
    new = out[:, ids.shape[1]:].tolist()
    results = []
    for row in new:
        cut = next((i for i, t in enumerate(row) if t in stop), None)
        text = tok.decode(row[:cut] if cut is not None else row, skip_special_tokens=True)
        results.append((text, cut is not None))
    return [results[i * n:(i + 1) * n] for i in range(len(prompts))]


SampleFn = Callable[[Sequence[str], Sequence[Sequence[int]], bool], list[list[tuple[str, bool]]]]


def lm_paraphrases(model, tok, records: Sequence[dict], n_eval: int, split_seed: int, args: LMArgs,
                   progress: bool = True, sample: SampleFn | None = None) -> tuple[list[dict], dict]:
    """Generated paraphrases for every record, merged into its split (module docstring).

    ``sample(prompts, seeds, plain)`` draws the continuations (default: ``model.generate``
    through ``sample_continuations``); tests pass their own. Returns the rows, each with
    ``generated`` (the kept templates) and ``filter`` (outcome counts), and a report of
    the totals."""
    from tqdm import tqdm

    args.check("paraphrases")
    if not isinstance(n_eval, int) or isinstance(n_eval, bool) or n_eval < 0:
        raise InputError(f"paraphrases: field 'n_eval' must be an integer >= 0, got {n_eval!r}")
    if sample is None:
        def sample(prompts, seeds, plain):
            return sample_continuations(model, tok, prompts, seeds, plain, args)
    was = model.training if model is not None else False
    if model is not None:
        model.eval()
    rows, totals, n_seq, n_cand = [], Counter(), 0, 0
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    try:
        for batch in tqdm(batches, desc="paraphrases", unit="batch", disable=not progress, mininterval=5):
            built = [build_prompt(tok, r["subject"], fill(r["prompt"], r["subject"])) for r in batch]
            plain = not built[0][1]
            seeds = [[row_seed(args.seed, r["case_id"], j) for j in range(args.n_candidates)] for r in batch]
            outs = sample([p for p, _ in built], seeds, plain)
            for rec, conts in zip(batch, outs):
                cands = [c for text, finished in conts for c in continuation_lines(text, finished)]
                kept, counts = filter_candidates(cands, rec)
                row, used = merge_split(rec, kept, n_eval, split_seed, args.mode, args.evaluate_from)
                if len(used) < len(kept):
                    counts["kept"] -= len(kept) - len(used)
                    counts["in_templates"] += len(kept) - len(used)
                row["generated"] = used
                row["filter"] = {k: counts[k] for k in ("kept",) + REASONS if counts[k]}
                rows.append(row)
                totals.update(counts)
                n_seq += len(conts)
                n_cand += len(cands)
    finally:
        if model is not None:
            model.train(was)
    report = {"generator": "lm", "n_records": len(records), "n_sequences": n_seq, "n_candidates": n_cand,
              "kept": totals["kept"], "keep_rate": totals["kept"] / n_cand if n_cand else 0.0,
              "rejected": {k: totals[k] for k in REASONS if totals[k]},
              "records_without_generated": sum(1 for r in rows if not r["generated"]),
              "args": asdict(args)}
    return rows, report
