"""Unrelated-text corpus: sources, passage shape, fact filter, split."""
from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import make_record

from edit_retention.corpus import build_corpus, pack, paragraphs_of
from edit_retention.io import InputError

PROSE = ("The quick brown fox jumps over the lazy dog near the river bank. "
         "It then runs across the meadow while the farmer watches from his porch. ")


@pytest.fixture(scope="module")
def docs():
    """Every python_docs passage, unfiltered, in corpus order (eval = all of them)."""
    c = build_corpus({"type": "python_docs"}, [], n_train=0, n_eval=0)
    return build_corpus({"type": "python_docs"}, [], n_train=0, n_eval=c["meta"]["n_usable"])


def write_text_file(tmp_path, n=30, mention_every=3):
    """A WikiText-like file: headings, and paragraphs of which some mention 'Freedonia'."""
    parts = [" = Title = ", ""]
    for i in range(n):
        extra = "Freedonia is a small country in this story. " if i % mention_every == 0 else ""
        parts += [f"Paragraph {i} begins here. " + extra + PROSE * 2, "", " = = Section = = ", ""]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(parts))
    return path


def test_python_docs_has_about_3000_prose_passages(docs):
    meta, passages = docs["meta"], docs["eval"]
    # 3005 on Python 3.11.7; docstrings change between Python versions
    assert meta["n_passages"] >= 2500, meta
    assert meta["python_version"] and meta["skipped_modules"] == []
    assert len(set(passages)) == len(passages) == meta["n_passages"]
    for p in passages:
        assert 200 <= len(p) <= 1200
        assert ">>>" not in p and not re.search(r"^[ \t]", p, re.M)
        assert sum(c.isalpha() or c.isspace() for c in p) / len(p) > 0.75


def test_python_docs_ignores_patches_made_by_imported_libraries(docs, monkeypatch):
    def warning_twice(self, msg):
        """Log a warning only twice per process, remembering which messages were seen already.

        Libraries such as transformers add methods like this one to logging.Logger, which
        would change the corpus if docstrings were read in the calling process.
        """
    monkeypatch.setattr(logging.Logger, "warning_twice", warning_twice, raising=False)
    again = build_corpus({"type": "python_docs"}, [], n_train=0, n_eval=docs["meta"]["n_usable"])
    assert again["eval"] == docs["eval"]


def test_filter_removes_every_passage_mentioning_a_fact(docs):
    rec = make_record(0, subject="Unicode", true="regular expression", new="Zanzibar")
    c = build_corpus({"type": "python_docs"}, [rec], n_train=1000, n_eval=200)
    dropped = sum(bool(re.search(r"\b(unicode|regular expression)\b", p, re.I)) for p in docs["eval"])
    assert c["meta"]["n_dropped_by_filter"] == dropped > 20
    for p in c["train"] + c["eval"]:
        assert not re.search(r"(?<!\w)(unicode|regular expression|zanzibar)(?!\w)", p, re.I)
    assert c["meta"]["n_usable"] == len(docs["eval"]) - dropped


def test_filter_matches_whole_words_only(tmp_path):
    path = tmp_path / "t.txt"
    texts = ["Freedonia is mentioned once here. " + PROSE * 2,
             "The Freedonian army is not the country itself. " + PROSE * 2,
             "Nothing about that place at all. " + PROSE * 2]
    path.write_text("\n\n".join(texts))
    c = build_corpus({"type": "text_file", "path": str(path)}, [make_record(0)], n_train=2, n_eval=0)
    assert c["meta"]["n_dropped_by_filter"] == 1
    assert sorted(p.split(".")[0] for p in c["train"]) == ["Nothing about that place at all",
                                                           "The Freedonian army is not the country itself"]


def test_text_file_split_is_disjoint_deterministic_and_seeded(tmp_path):
    path = write_text_file(tmp_path)
    src = {"type": "text_file", "path": str(path)}
    c = build_corpus(src, [make_record(0)], n_train=12, n_eval=5, seed=0)
    assert c["meta"]["n_passages"] == 30 and c["meta"]["n_dropped_by_filter"] == 10
    assert len(c["train"]) == 12 and len(c["eval"]) == 5 and not set(c["train"]) & set(c["eval"])
    assert all("= " not in p and "Freedonia" not in p for p in c["train"] + c["eval"])
    assert build_corpus(src, [make_record(0)], n_train=12, n_eval=5, seed=0) == c
    assert build_corpus(src, [make_record(0)], n_train=12, n_eval=5, seed=1)["eval"] != c["eval"]
    assert build_corpus(src, [make_record(0)], n_train=3, n_eval=5, seed=0)["eval"] == c["eval"]


def test_too_few_passages_names_the_source(tmp_path):
    path = write_text_file(tmp_path)
    with pytest.raises(InputError, match=r"text_file.*20 usable passages.*21"):
        build_corpus({"type": "text_file", "path": str(path)}, [make_record(0)], n_train=20, n_eval=1)


def test_jsonl_source_and_errors(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"Doc {i} starts. " + PROSE * 3}) + "\n" for i in range(4)))
    c = build_corpus({"type": "jsonl", "path": str(path), "field": "text"}, [], n_train=3, n_eval=1)
    assert len(c["train"]) == 3 and c["meta"]["field"] == "text"
    with pytest.raises(InputError, match="record 0: missing text field 'body'"):
        build_corpus({"type": "jsonl", "path": str(path), "field": "body"}, [], 1, 0)
    with pytest.raises(InputError, match="'field'"):
        build_corpus({"type": "jsonl", "path": str(path)}, [], 1, 0)
    with pytest.raises(InputError, match="unknown corpus source type 'web'.*jsonl, python_docs, text_file"):
        build_corpus({"type": "web"}, [], 1, 0)
    with pytest.raises(InputError, match="unknown key 'url' for corpus source type 'python_docs'"):
        build_corpus({"type": "python_docs", "url": "x"}, [], 1, 0)
    with pytest.raises(InputError, match="existing file"):
        build_corpus({"type": "text_file", "path": str(tmp_path / "nope.txt")}, [], 1, 0)


def test_long_paragraphs_are_cut_at_sentences_and_short_ones_joined():
    long = " ".join(f"Sentence number {i} says something plain about the weather today." for i in range(60))
    paras = paragraphs_of(long, docstring=False)
    assert len(paras) > 1 and all(len(p) <= 1200 and p.endswith(".") for p in paras)
    assert " ".join(paras) == long
    short = ["A short first paragraph that ends a sentence here.",
             "A second short paragraph, also a plain sentence of prose.",
             "A third one to make the joined passage long enough for use."] * 2
    out = pack(short, min_chars=120)
    assert all(len(p) >= 120 for p in out) and out[0].startswith(short[0]) and "\n\n" in out[0]


def test_docstring_paragraphs_drop_code_and_parameter_lists():
    doc = ("Return the thing that was asked for, computed with great care by this function.\n\n"
           ">>> thing(1)\n2\n\n"
           "Args:\n    x: the input value\n\n"
           "    indented_code = call(x)\n\n"
           "x -- the input value\ny -- another value\n\n"
           "This paragraph is prose again and explains what happens when the input is empty.")
    assert paragraphs_of(doc) == [
        "Return the thing that was asked for, computed with great care by this function.",
        "This paragraph is prose again and explains what happens when the input is empty."]
