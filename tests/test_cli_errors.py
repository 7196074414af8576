"""The CLI turns an out-of-memory failure into a message naming the setting to change, and a
full disk or an unwritable folder into one line naming the place (no traceback)."""
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


def test_a_full_disk_is_one_line_and_keeps_the_built_figure(monkeypatch, capsys, tmp_path):
    """Issue 14 item 6: no traceback for a full disk; the figure built before is still there,
    byte for byte, and no temporary file is left."""
    import errno

    from matplotlib.figure import Figure

    from edit_retention.stages import figure as figure_stage

    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    png.write_bytes(b"the figure of the last run")

    def full(self, fname, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))
    monkeypatch.setattr(Figure, "savefig", full)
    monkeypatch.setattr(figure_stage, "make_figure", lambda name, cells, p, q, fits=None:
                        __import__("edit_retention.plots.style", fromlist=["save"]).save(Figure(), p, q))
    code = cli.main(["figure", "freezing", "--cells", "c.csv", "--out-png", str(png), "--out-pdf", str(pdf)])
    err = capsys.readouterr().err
    assert code == 4 and err.count("\n") == 1
    assert err.startswith(f"error: figure: no space left on the device at {tmp_path}/.f.png.") and "free space" in err
    assert png.read_bytes() == b"the figure of the last run" and sorted(tmp_path.iterdir()) == [png]


@pytest.mark.parametrize("exc, words", [
    (Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'),
     "no space left on the device"),
    (Exception("No space left on device (os error 28)"), "no space left on the device"),
    (PermissionError(13, "Permission denied", "data/results/summary.csv"),
     "permission denied at data/results/summary.csv"),
    (OSError(30, "Read-only file system", "data/edits/x"), "read-only file system at data/edits/x"),
])
def test_storage_errors_name_the_problem_and_place(monkeypatch, capsys, exc, words):
    def boom(a):
        raise exc
    monkeypatch.setattr(evaluate_stage, "run", boom)
    code = cli.main(["evaluate", "--model", "m", "--edited", "e", "--control", "c", "--paraphrases", "p", "--out", "o"])
    err = capsys.readouterr().err
    assert code == 4 and f"error: evaluate: {words}" in err and "nothing half-written was kept" in err


def test_other_os_errors_propagate(monkeypatch):
    def boom(a):
        raise FileNotFoundError(2, "No such file or directory", "x")
    monkeypatch.setattr(evaluate_stage, "run", boom)
    with pytest.raises(FileNotFoundError):
        cli.main(["evaluate", "--model", "m", "--edited", "e", "--control", "c", "--paraphrases", "p", "--out", "o"])
