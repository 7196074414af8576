"""The "unrelated text" corpus: prose passages for layer statistics and for fine-tuning.

Usage::

    from edit_retention.corpus import build_corpus
    c = build_corpus({"type": "python_docs"}, records, n_train=2000, n_eval=200, seed=0)
    c["train"], c["eval"]   # lists of passages (plain prose, ~200-1200 characters each)
    c["meta"]               # source, counts, n_dropped_by_filter, python version, ...

Source types (``SOURCES``):

``python_docs``  the default, offline on every machine: prose paragraphs of the
                 docstrings (``inspect.getdoc``) of a fixed, sorted list of standard-library
                 modules (``PYTHON_DOC_MODULES``), of the classes and functions in their
                 namespaces and of those classes' methods, then the pydoc help topics
                 (``pydoc_data.topics``, the text ``help("assert")`` shows). Doctest, code,
                 indented, underline and parameter-list lines are dropped; a paragraph is
                 kept when it is mostly letters and ends a sentence, and only the first
                 time it is met. About 3000 passages (Python 3.11); docstrings differ
                 between Python versions, so ``meta`` records the version.
``text_file``    {path}: paragraphs split on blank lines and after lines that end a
                 sentence; heading lines that start with " = " (WikiText) are dropped.
``jsonl``        {path, field}: each row's ``field`` is one document, split the same way.

Passages: paragraphs longer than ``MAX_CHARS`` are cut at sentence ends; consecutive
paragraphs of one document are joined until a passage reaches ``MIN_CHARS``; a shorter
remainder is dropped; duplicates are dropped. Then every passage that mentions
(case-insensitive, whole words) any record's subject, target_true or target_new is
removed (counted in ``meta["n_dropped_by_filter"]``), the rest is shuffled with ``seed``
and the first ``n_eval`` become the evaluation set, the next ``n_train`` the training set
(so the evaluation set does not change when n_train does; the two never overlap).
"""
from __future__ import annotations

import importlib
import inspect
import json
import platform
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .fields import check_source_keys
from .io import InputError, read_jsonl, read_utf8

MIN_CHARS = 200
MAX_CHARS = 1200
MIN_LETTER_SHARE = 0.8

# Standard-library modules whose docstrings feed ``python_docs``: importable without side
# effects (no GUI, no printing, no network), present from Python 3.10 to 3.13.
PYTHON_DOC_MODULES = tuple(sorted((
    "abc", "argparse", "ast", "asyncio", "base64", "bdb", "binascii", "bisect", "builtins",
    "bz2", "calendar", "cmd", "code", "codecs", "codeop", "collections", "collections.abc",
    "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib",
    "contextvars", "copy", "copyreg", "cProfile", "csv", "ctypes", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "doctest", "email", "email.charset", "email.contentmanager",
    "email.feedparser", "email.generator", "email.header", "email.headerregistry",
    "email.message", "email.mime.base", "email.parser", "email.policy", "email.utils",
    "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc",
    "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac",
    "html", "html.parser", "http", "http.client", "http.cookiejar", "http.cookies",
    "http.server", "imaplib", "importlib", "importlib.abc", "importlib.machinery",
    "importlib.metadata", "importlib.resources", "importlib.util", "inspect", "io",
    "ipaddress", "itertools", "json", "json.decoder", "json.encoder", "keyword", "linecache",
    "locale", "logging", "logging.config", "logging.handlers", "lzma", "mailbox", "marshal",
    "math", "mimetypes", "modulefinder", "multiprocessing", "multiprocessing.connection",
    "multiprocessing.managers", "multiprocessing.pool", "multiprocessing.shared_memory",
    "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle",
    "pickletools", "pkgutil", "platform", "plistlib", "poplib", "posixpath", "pprint",
    "profile", "pstats", "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re",
    "reprlib", "rlcompleter", "runpy", "sched", "secrets", "selectors", "shelve", "shlex",
    "shutil", "signal", "site", "smtplib", "socket", "socketserver", "sqlite3", "ssl",
    "stat", "statistics", "string", "stringprep", "struct", "subprocess", "symtable", "sys",
    "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "time",
    "timeit", "token", "tokenize", "trace", "traceback", "tracemalloc", "types", "typing",
    "unicodedata", "unittest", "unittest.case", "unittest.mock", "unittest.result",
    "unittest.suite", "urllib.error", "urllib.parse", "urllib.request", "urllib.response",
    "urllib.robotparser", "uuid", "venv", "warnings", "wave", "weakref", "webbrowser",
    "wsgiref.handlers", "wsgiref.simple_server", "wsgiref.util", "wsgiref.validate",
    "xml.dom", "xml.dom.minidom", "xml.dom.pulldom", "xml.etree.ElementTree",
    "xml.sax", "xml.sax.handler", "xml.sax.saxutils", "xml.sax.xmlreader", "xmlrpc.client",
    "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo",
)))

_CODE_LINE = re.compile(
    r"^(>>>|\.\.\.|\$ |[-=~*^+]{3,}|:\w+|\.\. |[\w*.,\[\] ]{1,40}\s+--\s|[\w*]+\s*:\s*$|"
    r"(Args|Arguments|Parameters|Returns?|Yields?|Raises|Examples?|Attributes|Note|Usage)\s*:)"
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(\s+)(?=[A-Z\"'(])")


# ---------------------------------------------------------------- paragraphs -> passages

def prose_lines(block: list[str]) -> list[str]:
    """A block's lines without code, doctest, underline and parameter-list lines."""
    return [ln for ln in block if ln.strip() and not ln.startswith((" ", "\t"))
            and not _CODE_LINE.match(ln.strip())]


def is_prose(text: str) -> bool:
    """Mostly letters and spaces, a few words, ending a sentence."""
    if len(text) < 40 or len(text.split()) < 8:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) >= MIN_LETTER_SHARE and text.rstrip("\"')]").endswith((".", "!", "?"))


def sentences(text: str) -> list[str]:
    """Split a paragraph at sentence ends (the white space after them)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start:m.start(1)])
        start = m.end(1)
    out.append(text[start:])
    return [s for s in out if s.strip()]


def cut_long(paragraph: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Pieces of at most ``max_chars`` made of whole sentences (a longer sentence is dropped)."""
    pieces, cur = [], ""
    for s in sentences(paragraph):
        if len(s) > max_chars:
            if cur:
                pieces.append(cur)
            cur = ""
            continue
        if cur and len(cur) + 1 + len(s) > max_chars:
            pieces.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}" if cur else s
    return pieces + ([cur] if cur else [])


def pack(paragraphs: Iterable[str], min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    """Passages from one document's prose paragraphs (each at most ``max_chars``), in order.

    Consecutive paragraphs are joined (blank line between) until the passage reaches
    ``min_chars``; a remainder shorter than ``min_chars`` is dropped.
    """
    out, cur = [], ""
    for para in paragraphs:
        if cur and len(cur) + 2 + len(para) <= max_chars:
            cur = f"{cur}\n\n{para}"
        else:
            if len(cur) >= min_chars:
                out.append(cur)
            cur = para
        if len(cur) >= min_chars:
            out.append(cur)
            cur = ""
    if len(cur) >= min_chars:
        out.append(cur)
    return out


_LINE_ENDS_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*[ \t]*\n")


def paragraphs_of(text: str, docstring: bool = True, max_chars: int = MAX_CHARS) -> list[str]:
    """The prose paragraphs of a text, each on one line and at most ``max_chars`` long.

    Paragraphs are separated by blank lines; in a docstring, code, doctest and
    parameter-list lines are removed first; in other text a line ending a sentence also
    ends a paragraph (one paragraph per line in WikiText and C4). A longer paragraph is cut
    at sentence ends. Only pieces that pass :func:`is_prose` are returned.
    """
    blocks = re.split(r"\n[ \t]*\n", text)
    if not docstring:
        blocks = [b for block in blocks for b in _LINE_ENDS_SENTENCE.split(block)]
    out = []
    for block in blocks:
        lines = prose_lines(block.split("\n")) if docstring else block.split("\n")
        para = " ".join(" ".join(lines).split())
        pieces = cut_long(para, max_chars) if len(para) > max_chars else [para]
        out += [p for p in pieces if p and is_prose(p)]
    return out


# ---------------------------------------------------------------- sources

def _doc(obj) -> str:
    """``inspect.getdoc`` of an object, "" when it has none or cannot be read."""
    try:
        return inspect.getdoc(obj) or ""
    except Exception:  # an attribute whose lookup raises has no docstring for us
        return ""


def _docstrings(module) -> Iterator[str]:
    """Docstrings of a module, the classes and functions it exposes, and their methods.

    Names come from ``dir`` and values from ``getattr`` (not ``vars``), so lazily loaded
    attributes are seen whether or not something imported them before.
    """
    yield _doc(module)
    for attr in sorted(dir(module)):
        try:
            obj = getattr(module, attr)
        except Exception:  # a lazy attribute that fails to load is skipped
            continue
        if attr.startswith("__") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        yield _doc(obj)
        if inspect.isclass(obj):
            for meth in sorted(vars(obj)):
                yield _doc(vars(obj)[meth])


def extract_docstrings(modules: Iterable[str]) -> tuple[list[list[str]], list[str]]:
    """(the docstrings of each importable module, then one per pydoc topic; skipped names).

    Runs in whatever interpreter calls it; :func:`python_docs_documents` calls it in a
    fresh one.
    """
    texts, skipped = [], []
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # a module missing from this Python build is skipped, and listed
            skipped.append(name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            texts.append(list(_docstrings(module)))
    try:
        from pydoc_data.topics import topics
        texts += [[topics[k]] for k in sorted(topics)]
    except ImportError:
        skipped.append("pydoc_data.topics")
    return texts, skipped


_WORKER = ("import json, sys; sys.path.insert(0, sys.argv[2]); "
           "from edit_retention.corpus import extract_docstrings; "
           "json.dump(extract_docstrings(json.loads(sys.argv[1])), sys.stdout)")


def _docstrings_fresh(modules: list[str]) -> tuple[list[list[str]], list[str]]:
    """:func:`extract_docstrings` in a fresh interpreter (``-I -S``: no site, no env).

    Imported libraries patch the standard library (transformers adds methods to
    ``logging.Logger``), so docstrings read in this process would depend on what it
    imported before; a fresh interpreter of the same Python sees only the stdlib.
    """
    src = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", _WORKER, json.dumps(modules), src],
                          capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"reading standard-library docstrings failed:\n{proc.stderr[-2000:]}")
    texts, skipped = json.loads(proc.stdout)
    return texts, skipped


def python_docs_documents(modules: Iterable[str] = PYTHON_DOC_MODULES) -> tuple[list[list[str]], list[str]]:
    """(one list of prose paragraphs per module or pydoc topic, modules not importable).

    A paragraph is kept only the first time it is met.
    """
    texts, skipped = _docstrings_fresh(list(modules))
    documents, seen = [], set()
    for docs in texts:
        paras = []
        for para in (p for d in docs for p in paragraphs_of(d)):
            if para not in seen:
                seen.add(para)
                paras.append(para)
        documents.append(paras)
    return documents, skipped


def source_python_docs(source: dict) -> tuple[list[str], dict]:
    """Passages from standard-library docstrings and pydoc topics."""
    documents, skipped = python_docs_documents()
    passages = [p for paras in documents for p in pack(paras)]
    return passages, {"python_version": platform.python_version(), "skipped_modules": skipped}


def _file(source: dict) -> Path:
    """The source's existing ``path``."""
    path = source.get("path")
    if not isinstance(path, str) or not Path(path).is_file():
        raise InputError(f"corpus source {source.get('type')!r}: field 'path' must name an existing file, got {path!r}")
    return Path(path)


def source_text_file(source: dict) -> tuple[list[str], dict]:
    """Passages from a plain-text file; WikiText heading lines (" = ... = ") dropped."""
    text = read_utf8(_file(source), verify=False)
    text = "\n".join(ln for ln in text.split("\n") if not ln.startswith(" = "))
    return pack(paragraphs_of(text, docstring=False)), {"path": str(source["path"])}


def source_jsonl(source: dict) -> tuple[list[str], dict]:
    """Passages from the ``field`` of each row of a JSONL file."""
    path, field = _file(source), source.get("field")
    if not isinstance(field, str):
        raise InputError(f"corpus source 'jsonl': field 'field' (the text column) is required, got {field!r}")
    passages = []
    for i, row in enumerate(read_jsonl(path, verify=False)):
        if not isinstance(row.get(field), str):
            raise InputError(f"{path}: record {i}: missing text field {field!r}")
        passages += pack(paragraphs_of(row[field], docstring=False))
    return passages, {"path": str(path), "field": field}


# type -> (builder, keys it accepts besides "type")
SOURCES: dict[str, tuple[Callable[[dict], tuple[list[str], dict]], tuple[str, ...]]] = {
    "python_docs": (source_python_docs, ()),
    "text_file": (source_text_file, ("path",)),
    "jsonl": (source_jsonl, ("path", "field")),
}
# type -> the keys it accepts besides "type" (checked here and in the study config, config.py)
SOURCE_KEYS = {kind: keys for kind, (_, keys) in SOURCES.items()}


# ---------------------------------------------------------------- filter and split

def filter_terms(records: list[dict]) -> set[str]:
    """Every record's subject, target_true and target_new."""
    return {r[f].strip() for r in records for f in ("subject", "target_true", "target_new") if r[f].strip()}


def _words(text: str) -> list[str]:
    """Lower-case word tokens."""
    return re.findall(r"\w+", text.lower())


def mention_filter(terms: set[str]) -> Callable[[str], bool]:
    """A test: does a text mention any of ``terms`` as whole words, ignoring case?

    Terms are indexed by their first word, so a text is only searched for terms whose
    words all occur in it (one big alternation regex is ~10x slower).
    """
    index: dict[str, list[tuple[frozenset, re.Pattern]]] = {}
    for term in sorted(terms):
        words = _words(term)
        if words:
            pat = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)
            index.setdefault(words[0], []).append((frozenset(words), pat))

    def mentions(text: str) -> bool:
        words = set(_words(text))
        return any(need <= words and pat.search(text)
                   for w in words & index.keys() for need, pat in index[w])

    return mentions


def _source_name(source: dict) -> str:
    """Short description of a source for messages."""
    return json.dumps(source, sort_keys=True)


def _check(source) -> Callable:
    """The builder of a source; InputError on unknown types or keys."""
    return SOURCES[check_source_keys(source, SOURCE_KEYS, "corpus source", "corpus source")][0]


def build_corpus(source: dict, records: list[dict], n_train: int, n_eval: int, seed: int = 0) -> dict:
    """Train and eval passages from ``source`` that mention none of the records' entities."""
    builder = _check(source)
    for name, n in (("n_train", n_train), ("n_eval", n_eval)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InputError(f"corpus: field {name!r} must be an integer >= 0, got {n!r}")
    passages, extra = builder(source)
    passages = list(dict.fromkeys(passages))
    terms = filter_terms(records)
    mentions = mention_filter(terms)
    kept = [p for p in passages if not mentions(p)]
    if len(kept) < n_train + n_eval:
        raise InputError(
            f"corpus source {_source_name(source)}: {len(kept)} usable passages "
            f"({len(passages)} found, {len(passages) - len(kept)} mention a fact), "
            f"but n_train + n_eval = {n_train + n_eval} were asked for"
        )
    random.Random(seed).shuffle(kept)
    meta = {"source": source, "seed": seed, "n_passages": len(passages),
            "n_dropped_by_filter": len(passages) - len(kept), "n_usable": len(kept),
            "n_train": n_train, "n_eval": n_eval, "n_filter_terms": len(terms), **extra}
    return {"train": kept[n_eval:n_eval + n_train], "eval": kept[:n_eval], "meta": meta}
