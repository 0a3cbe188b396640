"""Checks shared by the sample pushdown tests (FileStore and PostgreSQL) over the runs
of :func:`aggregate_support.fill`."""

from __future__ import annotations

import dataclasses
from typing import Any

from aggregate_support import WHERES

from metalab import load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure, query_figure
from metalab.store import Store

SPECS = [
    PlotSpec("scatter", "metrics.acc", "metrics.loss", over_seeds=False, max_points=50),
    PlotSpec("scatter", "params.lr", "metrics.loss", "params.opt", over_seeds=False,
             max_points=20),
    PlotSpec("line", "params.lr", "metrics.acc", "params.flag", over_seeds=False,
             max_points=10),
    PlotSpec("scatter", "duration_ms", "metrics.word", "status", over_seeds=False,
             max_points=12),
]


def _points(figure: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """run id -> (trace name, colour, x, y) of every point of ``figure``."""
    return {run: (t.get("name"), t["marker"]["color"], x, y) for t in figure["data"]
            for run, x, y in zip(t["customdata"], t["x"], t["y"], strict=True)}


def check_samples(store: Store, reference: Store) -> None:
    """Raw scatters of more runs than ``max_points``: the figure ``store`` computes
    from a sample chosen in its index says what the loaded figure says (runs,
    left out by reason, the "n of N" note, axes) and draws ``max_points`` of the
    loaded runs' points, each as the loaded path draws it; the same sample on
    every request; fewer runs than ``max_points`` are loaded."""
    for spec in SPECS:
        for where in WHERES:
            pushed = pushed_figure(store, None, where, spec)
            loaded = plot_figure(load_results(reference, where=where, columns=spec.fields()),
                                 spec)
            assert pushed is not None, (spec.to_query(), where)
            assert pushed["layout"] == loaded["layout"], (spec.to_query(), where)
            every = dataclasses.replace(spec, max_points=10_000)
            whole = _points(plot_figure(load_results(reference, where=where,
                                                     columns=spec.fields()), every))
            got = _points(pushed)
            assert len(got) == spec.max_points
            assert all(whole[run] == point for run, point in got.items())
            for trace in pushed["data"]:
                if spec.kind == "line":
                    assert trace["x"] == sorted(trace["x"])
            assert pushed_figure(store, None, where, spec) == pushed  # (the same sample)
            assert query_figure(store, spec, where) == pushed
            assert pushed_figure(store, None, where, every) is None  # (all: loaded)
    categories = PlotSpec("scatter", "params.mixed", "metrics.acc", over_seeds=False,
                          max_points=10)
    assert pushed_figure(store, None, None, categories) is None
