"""Facts about Python's standard library, read offline, for the instruction and QA defaults.

``stdlib_functions()`` lists the public functions of ``corpus.PYTHON_DOC_MODULES`` with
their signature and the first sentence of their docstring, read in a fresh interpreter
(``python -I -S``, as the corpus does, so that imported libraries cannot patch what is
read). Every machine that runs Python has this text; it is fixed by the Python version and
has nothing to do with the geography facts under study (the fact filter checks anyway).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

_WORKER = r'''
import importlib, inspect, json, sys, warnings
out = []
for name in json.loads(sys.argv[1]):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(name)
    except Exception:
        continue
    for attr in sorted(dir(mod)):
        if attr.startswith("_"):
            continue
        try:
            obj = getattr(mod, attr)
        except Exception:
            continue
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", None) not in (name, "_" + name.split(".")[-1]) and name != "builtins":
            continue
        try:
            doc = inspect.getdoc(obj) or ""
        except Exception:
            doc = ""
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        out.append({"module": name, "name": attr, "signature": sig, "doc": doc})
json.dump(out, sys.stdout)
'''

_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


def first_sentence(doc: str) -> str:
    """The docstring's first paragraph's first sentence, on one line ("" when not prose)."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    m = _FIRST_SENTENCE.match(para)
    s = m.group(1) if m else ""
    words = s.split()
    if len(words) < 4 or len(s) > 240 or not s[0].isupper() or "(" in s.split(" ")[0]:
        return ""
    letters = sum(c.isalpha() or c == " " for c in s) / max(len(s), 1)
    return s if letters > 0.8 else ""


def stdlib_functions() -> list[dict]:
    """[{module, name, signature, summary}] sorted by (module, name); summary non-empty."""
    from ..corpus import PYTHON_DOC_MODULES

    src = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", _WORKER, json.dumps(list(PYTHON_DOC_MODULES)), src],
                          capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"reading standard-library functions failed:\n{proc.stderr[-2000:]}")
    out = []
    for f in json.loads(proc.stdout):
        s = first_sentence(f.pop("doc"))
        if s:
            out.append({**f, "summary": s})
    return out
