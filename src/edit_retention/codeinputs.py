"""Code inputs of each pipeline stage, computed from the imports (never listed by hand).

Usage::

    from edit_retention.codeinputs import code_inputs, stage_inputs
    code_inputs("stages.select_intrinsic")   # sorted source files that module runs
    stage_inputs("apply_edits")              # + cli, the hparams files of the edit stage

    python -m edit_retention.codeinputs apply_edits      # print a stage's inputs
    python -m edit_retention.codeinputs --write-dvc dvc.yaml   # regenerate dvc.yaml's code deps

Every rule family has one entry module, ``stages/<family>.py``, and its code inputs are the
package modules that module imports, transitively: absolute (``edit_retention.x``) and
relative imports, at module level or inside functions (a lazy import is an import), each
with the ``__init__.py`` of every package on its way (importing ``a.b`` runs ``a``). Every
rule runs ``python -m edit_retention`` (``__main__`` -> ``cli``), so those are inputs too.
Imports by name at run time (``importlib``) are invisible here; only ``cli``'s dispatch to
the stage modules and ``plots``' to the figure modules use it, and a figure rule lists its
figure module as a second entry. A stage that reads package data files (the edit stage's
hyperparameter sets) lists them in DATA.
"""
from __future__ import annotations

import argparse
import ast
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "edit_retention"
SRC = Path(__file__).resolve().parent
# The entry modules every rule runs before its stage's own.
COMMON = ("__main__", "cli")
# Package data a stage reads, as globs relative to the package.
DATA = {"apply_edits": ["hparams/*/*.yaml"], "train_mend": ["hparams/mend/*.yaml"]}
# The rule families each DVC stage (dvc.yaml) runs through its Snakemake target.
DVC_STAGES = {
    "models": ["prepare_model"],
    "facts": ["prepare_facts", "generate_paraphrases", "build_corpus"],
    "intrinsic": ["select_intrinsic"],
    "stats": ["layer_stats"],
    "edits": ["apply_edits", "train_mend", "edit_health"],
    "finetune_evaluate": ["build_task_data", "finetune", "evaluate"],
    "summarize": ["summarize", "claims"],
    "figures": ["figure"],
    "report": ["report"],
}


def module_file(name: str, root: Path = SRC) -> Path | None:
    """The source file of package module ``name`` ("editors.rome", "" for the package)."""
    base = root.joinpath(*name.split(".")) if name else root
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _package_of(name: str, root: Path) -> str:
    f = module_file(name, root)
    is_pkg = f is not None and f.name == "__init__.py"
    return name if is_pkg else name.rpartition(".")[0]


def imported_modules(name: str, root: Path = SRC) -> set[str]:
    """Package modules that module ``name`` imports directly (at any depth of its code),
    each as a name relative to the package; names that may be modules (``from .a import
    b``: ``a.b`` if it is a module) are included where a file exists."""
    tree = ast.parse(module_file(name, root).read_text())
    pkg = _package_of(name, root)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            heads = [t[len(PACKAGE) + 1:] if t != PACKAGE else "" for t in targets
                     if t == PACKAGE or t.startswith(PACKAGE + ".")]
            out.update(heads)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = pkg.split(".") if pkg else []
            parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            head = ".".join(parts + ([node.module] if node.module else []))
        elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
            head = node.module[len(PACKAGE) + 1:]
        else:
            continue
        if node.module:            # from .a import b: runs a (and b, if b is a module)
            out.add(head)
        for a in node.names:
            sub = f"{head}.{a.name}" if head else a.name
            out.add(sub if module_file(sub, root) is not None else head)
    return {m for m in out if module_file(m, root) is not None}


def _with_parents(name: str) -> list[str]:
    parts = name.split(".") if name else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def closure(entry: str, root: Path = SRC) -> frozenset[str]:
    """Every package module that running ``entry`` may import (itself included), with the
    ``__init__`` of each package on the way."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        m = todo.pop()
        for p in _with_parents(m):
            if p not in seen:
                seen.add(p)
                todo.extend(imported_modules(p, root))
    return frozenset(seen)


def code_inputs(*entries: str, root: Path = SRC) -> list[str]:
    """Sorted source files (paths relative to the repository root) that ``entries`` run."""
    mods = set().union(*(closure(e, root) for e in entries))
    return sorted(_rel(module_file(m, root)) for m in mods)


def _rel(f: Path) -> str:
    return f"src/{PACKAGE}/{f.relative_to(SRC).as_posix()}"


def stage_inputs(family: str, *extra: str) -> list[str]:
    """Code inputs of a rule family: ``stages/<family>.py``, the CLI, what they import,
    ``extra`` entry modules (a figure's module) and the family's package data files."""
    if module_file(f"stages.{family}") is None:
        raise KeyError(f"no stage module stages/{family}.py")
    files = code_inputs(*COMMON, f"stages.{family}", *extra)
    data = sorted(_rel(f) for g in DATA.get(family, []) for f in SRC.glob(g))
    return files + data


def dvc_inputs(stage: str) -> list[str]:
    """Code inputs of a DVC stage: those of every rule family it runs (figures: all of them)."""
    out: set[str] = set()
    for family in DVC_STAGES[stage]:
        extra = [f"plots.{n}" for n in _figures()] if family == "figure" else []
        out.update(stage_inputs(family, *extra))
    return sorted(out)


def _figures() -> list[str]:
    from .plots import FIGURES

    return FIGURES


def import_cycles(root: Path = SRC) -> list[list[str]]:
    """Strongly connected groups (more than one module) of the import graph: a package's
    ``__init__`` importing its own submodules is not an edge back from them."""
    mods = sorted(_rel(f)[len(f"src/{PACKAGE}/"):-3].replace("/", ".").removesuffix(".__init__")
                  for f in root.rglob("*.py"))
    mods = [("" if m == "__init__" else m) for m in mods]
    graph = {m: {d for d in imported_modules(m, root) if d != m} for m in mods}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for m in mods:
        if m not in index:
            visit(m)
    return out


def dvc_text(text: str) -> str:
    """``dvc.yaml``'s text with each stage's package deps (``- src/edit_retention/...``)
    replaced by the computed ones, everything else (comments, order) kept."""
    lines, out, stage, in_deps = text.splitlines(), [], None, False
    prefix = f"src/{PACKAGE}/"
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("-"):
            stage = stripped[:-1]
        if indent == 4 and stripped.endswith(":"):
            if in_deps:
                out.extend(_dvc_deps(stage))
            in_deps = stripped == "deps:" and stage in DVC_STAGES
        elif in_deps and indent < 4 and stripped:
            out.extend(_dvc_deps(stage))
            in_deps = False
        if in_deps and stripped.startswith(f"- {prefix}"):
            continue
        out.append(line)
    if in_deps:
        out.extend(_dvc_deps(stage))
    return "\n".join(out) + "\n"


def _dvc_deps(stage: str) -> list[str]:
    return [f"      - {f}" for f in dvc_inputs(stage)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edit_retention.codeinputs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", nargs="?", help="a rule family (stages/<family>.py)")
    p.add_argument("--write-dvc", metavar="DVC_YAML", help="rewrite this dvc.yaml's code deps")
    a = p.parse_args(argv)
    if a.write_dvc:
        f = Path(a.write_dvc)
        f.write_text(dvc_text(f.read_text()))
    if a.family:
        print("\n".join(stage_inputs(a.family)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
