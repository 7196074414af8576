"""Reading the result tables back (cells.csv, facts.csv, claims.csv, problems.csv)."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .checksums import verify_file


def read_table(path: str | os.PathLike, text_cols=("model", "editor", "task", "remedy", "knowledge", "phase",
                                                    "metric", "case_id", "relation", "freeze", "method",
                                                    "seeds")) -> pd.DataFrame:
    """Read cells.csv / facts.csv / problems.csv back (labels as text, "NaN" as NaN)."""
    path = Path(path)
    verify_file(path)
    head = pd.read_csv(path, nrows=0).columns
    dtype = {c: str for c in text_cols if c in head}
    df = pd.read_csv(path, keep_default_na=False, na_values=["NaN"], dtype=dtype)
    for c in dtype:
        df[c] = df[c].fillna("")
    return df
