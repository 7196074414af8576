"""benchmarks/bench_health.py --show prints what an edit did to the controls: base greedy
token -> edited greedy token, for the controls it changed and only those."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from conftest import make_record

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_health", ROOT / "benchmarks" / "bench_health.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_show_changes_lists_only_controls_the_edit_changed(tiny_model, capsys):
    model, tok = tiny_model
    control = [make_record(i, subject=s) for i, s in enumerate(["Freedonia", "Sylvania", "Latveria"])]
    bench = _bench()
    bench.show_changes(model, tok, [({}, control)], limit=5)
    assert "0 of 3 controls changed" in capsys.readouterr().out
    name, w = next((n, p) for n, p in model.named_parameters() if n.endswith("lm_head.weight")
                   or n.endswith("embed_tokens.weight"))
    g = torch.Generator().manual_seed(0)
    before = w.detach().clone()
    bench.show_changes(model, tok, [({name: 50 * torch.randn(w.shape, generator=g)}, control)], limit=5)
    out = capsys.readouterr().out
    n_changed = int(out.split(" of 3 controls changed")[0].split()[-1])
    assert n_changed >= 1 and out.count("' -> '") == n_changed
    assert torch.equal(w.detach(), before)      # the delta is removed again
