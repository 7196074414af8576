"""Filter for the language-model paraphrase generator (``paraphrase_lm``): sampled
continuations -> templates.

Usage::

    from edit_retention.paraphrase_lm_filter import continuation_lines, filter_candidates
    kept, counts = filter_candidates(continuation_lines(text, finished), record)

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
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from .paraphrase import template_key
from .paraphrase_lm_generate import EXAMPLES

MIN_WORDS, MAX_WORDS = 3, 24
# Rejection reasons in the order they are tested (the first that applies is counted).
REASONS = ("empty", "truncated", "echoes_example", "brackets", "no_subject", "subject_repeated",
           "contains_object", "ends_sentence", "ends_with_subject", "too_short", "too_long", "extends_prompt",
           "same_as_prompt", "duplicate", "in_templates")

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
