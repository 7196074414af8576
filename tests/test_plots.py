"""Figures render from a synthetic summary, as PNG and PDF."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from edit_retention.io import InputError
from edit_retention.plots import make_figures
from edit_retention.summarize import COLUMNS, write_summary


def _summary() -> pd.DataFrame:
    rows = []
    for editor in ("rome", "memit"):
        for remedy in ("none", "paraphrase", "freeze"):
            for seed in (0, 1):
                lab = {"model": "tiny", "editor": editor, "task": "text", "remedy": remedy, "seed": seed}
                for knowledge, ret in (("edited", 0.4), ("intrinsic", 0.9)):
                    if editor == "memit" and remedy == "freeze" and knowledge == "intrinsic":
                        rows.append(dict(lab, knowledge=knowledge, phase="finetuned",
                                         metric="retention_rewrite", value=math.nan, n=0))
                    else:
                        rows.append(dict(lab, knowledge=knowledge, phase="finetuned",
                                         metric="retention_rewrite", value=ret, n=10))
                    for phase, v in (("base", 0.0 if knowledge == "edited" else 1.0), ("edited", 0.9),
                                     ("step-10", 0.7), ("finetuned", ret)):
                        rows.append(dict(lab, knowledge=knowledge, phase=phase,
                                         metric="rewrite_success", value=v, n=10))
                rows.append(dict(lab, knowledge="task", phase="finetuned", metric="eval_loss",
                                 value=2.0, n=None))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["n"] = df["n"].astype("Int64")
    return df


def test_make_figures_writes_png_and_pdf(tmp_path):
    csv = tmp_path / "summary.csv"
    write_summary(_summary(), csv, tmp_path / "metrics.json")
    paths = make_figures(csv, tmp_path / "figs")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{e}" for n in ("retention_by_editor", "remedies", "phases")
                           for e in ("png", "pdf"))
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
        assert p.stat().st_size > 1000
    assert sorted(x.name for x in (tmp_path / "figs").iterdir()) == names  # no temp files left


def test_missing_baseline_remedy_is_an_error(tmp_path):
    df = _summary()
    csv = tmp_path / "summary.csv"
    write_summary(df[df.remedy != "none"], csv, tmp_path / "metrics.json")
    with pytest.raises(InputError, match="remedy 'none'"):
        make_figures(csv, tmp_path / "figs")
