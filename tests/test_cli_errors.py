"""The CLI turns an out-of-memory failure into a message naming the setting to change."""
from __future__ import annotations

import pytest

from edit_retention import cli
from edit_retention.stages import evaluate as evaluate_stage


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")])
def test_out_of_memory_names_the_setting(monkeypatch, capsys, exc):
    def boom(a):
        raise exc
    monkeypatch.setattr(evaluate_stage, "run", boom)
    code = cli.main(["evaluate", "--model", "m", "--device", "cuda", "--edited", "e", "--control", "c",
                     "--paraphrases", "p", "--out", "o"])
    err = capsys.readouterr().err
    assert code == 3 and "evaluate: out of memory on device 'cuda'" in err and "evaluate.batch_size" in err


def test_other_runtime_errors_propagate(monkeypatch):
    def boom(a):
        raise RuntimeError("shape mismatch")
    monkeypatch.setattr(evaluate_stage, "run", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli.main(["evaluate", "--model", "m", "--edited", "e", "--control", "c", "--paraphrases", "p", "--out", "o"])
