"""Every figure renders (PNG + PDF) from a synthetic cells table; absent cells give a
"not in this grid" panel, never an error."""
from __future__ import annotations

import pytest

from _synth import KEEP, REMEDIES, TASKS, make_grid
from edit_retention.io import InputError, write_json
from edit_retention.plots import FIGURES, build, make_figure, make_figures
from edit_retention.summarize import relations_of, summarize_all, write_results
from edit_retention.elasticity import elasticity


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    cells, rec = make_grid(tmp, list(REMEDIES), KEEP, steps=(1, 2, 3), editors=("rome", "memit"), n=9)
    res = summarize_all(cells, relations_of([rec]), REMEDIES, TASKS, n_boot=50)
    out = tmp / "results"
    write_results(res, out / "summary.csv", out / "metrics.json", out / "cells.csv", out / "facts.csv",
                  out / "problems.csv")
    write_json(out / "elasticity.json", {"curves": elasticity(res.units, res.cells, n_boot=30)})
    return res, out


def _texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + " " + (
        fig._suptitle.get_text() if fig._suptitle else "")


def test_every_figure_writes_png_and_pdf(tables, tmp_path):
    _, out = tables
    paths = make_figures(out / "cells.csv", tmp_path / "figs", fits=out / "elasticity.json")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{e}" for n in FIGURES for e in ("png", "pdf"))
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
        assert p.stat().st_size > 1000
    assert sorted(x.name for x in (tmp_path / "figs").iterdir()) == names  # no temp files left


def test_one_figure_at_a_time(tables, tmp_path):
    _, out = tables
    got = make_figure("retention_vs_k", out / "cells.csv", tmp_path / "k.png", tmp_path / "k.pdf",
                      fits=out / "elasticity.json")
    assert [p.name for p in got] == ["k.png", "k.pdf"]
    with pytest.raises(InputError, match="unknown figure"):
        make_figure("nope", out / "cells.csv", tmp_path / "x.png", tmp_path / "x.pdf")


def test_data_figures_have_data_and_absent_cells_say_not_in_this_grid(tables):
    res, _ = tables
    cells = res.cells
    for name in ("retention_by_editor", "retention_vs_steps", "retention_vs_k", "freezing", "methods"):
        assert "not in this grid" not in _texts(build(name, cells)), name
    assert "not in this grid" in _texts(build("retention_vs_edit_size", cells))     # one edit-set size
    only_none = cells[cells.remedy == "none"]
    for name in ("retention_vs_k", "freezing", "methods"):
        assert "not in this grid" in _texts(build(name, only_none)), name
    no_traits = cells.assign(paraphrase_k=float("nan"))
    assert "not in this grid" in _texts(build("retention_by_editor", no_traits))
    assert "not in this grid" in _texts(build("retention_by_editor", cells.iloc[0:0]))


def test_task_score_axis_names_the_tasks_own_metric(tables):
    """Rows of task_score (a copy of the task's metric, here eval_perplexity) are labelled
    with that metric, not with "task_score"."""
    import pandas as pd

    from edit_retention.plots import style
    cells = tables[0].cells
    ppl = cells[(cells.knowledge == "task") & (cells.metric == "eval_perplexity")]
    with_score = pd.concat([cells, ppl.assign(metric="task_score")], ignore_index=True)
    assert style.score_label(with_score, "task_score") == "eval_perplexity"
    assert style.score_label(cells, "eval_loss") == "eval_loss"
    other = pd.concat([cells, ppl.assign(metric="task_score", value=ppl.value + 1)], ignore_index=True)
    assert style.score_label(other, "task_score") == "task_score"     # no metric it copies
    fig = build("freezing", with_score)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "eval_perplexity (mean over seeds)" in labels and not any("task_score" in l for l in labels)


def test_figure_1_shows_each_protocol_and_the_reference_pairing(tables):
    """One group per editor x protocol, and the reference study's asymmetric pairing: its
    edited bar is the edited first-token retention, its intrinsic bar the intrinsic
    generation-contains retention."""
    import pandas as pd
    from matplotlib.container import BarContainer

    cells = tables[0].cells
    ft = cells[cells.metric == "retention_rewrite@first_token"]
    assert not ft.empty
    gen = ft.assign(metric="retention_rewrite@generation_contains", value=ft.value * 0.5, ci_low=ft.ci_low * 0.5,
                    ci_high=ft.ci_high * 0.5)
    ax = build("retention_by_editor", pd.concat([cells, gen], ignore_index=True)).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:4] == ["memit\nprobability", "memit\nfirst token", "memit\ngeneration\ncontains",
                          "memit\nreference\npairing"] and len(labels) == 8
    bars = {c.get_label(): [b.get_height() for b in c] for c in ax.containers if isinstance(c, BarContainer)}

    def value(rows, knowledge):
        r = rows[(rows.editor == "memit") & (rows.remedy == "none") & (rows.phase == "finetuned")
                 & (rows.knowledge == knowledge)]
        return float(r.value.iloc[0])
    assert bars["edited"][3] == pytest.approx(value(ft, "edited"))
    assert bars["intrinsic"][3] == pytest.approx(value(gen, "intrinsic"))
    assert bars["intrinsic"][1] == pytest.approx(value(ft, "intrinsic"))


def test_figure_7_puts_each_protocol_on_a_log_token_axis(tables):
    """One panel per protocol plus the reference pairing; x is step x batch_size x seq_len
    (TASKS: 2 x 8) of every checkpoint and the final phase, on a log axis; the pairing's
    edited curve is the edited first-token retention, its intrinsic curve the intrinsic
    generation-contains retention."""
    import pandas as pd

    cells = tables[0].cells
    ft = cells[cells.metric == "retention_rewrite@first_token"]
    gen = ft.assign(metric="retention_rewrite@generation_contains", value=ft.value * 0.5)
    fig = build("retention_vs_tokens", pd.concat([cells, gen], ignore_index=True))
    rome = [ax for ax in fig.axes if ax.get_title().startswith("tiny / text: rome")]
    assert [ax.get_title().split("\n")[1] for ax in rome] == ["probability", "first token", "generation contains",
                                                              "reference pairing"]
    assert all(ax.get_xscale() == "log" for ax in rome)
    lines = {(i, ln.get_label()): ln for i, ax in enumerate(rome) for ln in ax.get_lines()
             if ln.get_label() in ("edited", "intrinsic")}
    assert list(lines[(0, "edited")].get_xdata()) == [16, 32, 48, 64]

    def values(rows, knowledge):
        r = rows[(rows.editor == "rome") & (rows.remedy == "none") & (rows.knowledge == knowledge)
                 & (rows.tokens > 0)].sort_values("tokens")
        return list(r.value)
    assert list(lines[(3, "edited")].get_ydata()) == pytest.approx(values(ft, "edited"))
    assert list(lines[(3, "intrinsic")].get_ydata()) == pytest.approx(values(gen, "intrinsic"))
    assert list(lines[(0, "intrinsic")].get_ydata()) != list(lines[(3, "intrinsic")].get_ydata())
    assert "not in this grid" in _texts(build("retention_vs_tokens", cells.drop(columns="tokens")))


def test_freezing_labels_do_not_overlap_with_the_reference_block_ranges(tables):
    """Four freezing strategies with long names (the freezing experiment's grid): every tick
    label of the retention and score panels stays clear of its neighbours."""
    import pandas as pd

    cells = tables[0].cells
    frozen = cells[cells.freeze == "edited"]
    more = [frozen.assign(freeze=f, remedy=f"freeze-{f}") for f in ("above_edited", "below_edited")]
    fig = build("freezing", pd.concat([cells, *more], ignore_index=True))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes[:2]:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) == 8                                   # 2 editors x 4 strategies
        boxes.sort(key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(round(b.x0), round(b.x1)) for b in boxes]
