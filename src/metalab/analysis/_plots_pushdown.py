"""Charts over seeds computed in the store's index (aggregation pushdown).

:func:`pushed_figure` draws a :class:`~metalab.analysis.PlotSpec` from the
groups :meth:`Store.aggregate_runs <metalab.store.Store.aggregate_runs>`
computes in SQL (one row per distinct ``(x, group)`` value, never one per
run), when the store offers it and the chart is one it can serve: ``line``
and ``scatter`` over seeds, ``bar``; a ``scatter`` or ``line`` of raw points
over more runs than ``max_points`` from the counts of the runs left out and a
fixed sample :meth:`Store.sample_runs <metalab.store.Store.sample_runs>`
chooses (other runs than the loaded path's sample, said in the same note);
a numeric ``histogram`` from the range
and the counts per bin (and group) :meth:`Store.histogram_runs
<metalab.store.Store.histogram_runs>` computes, binned by the edges numpy
gives for that range, as the loaded path bins.  The figure is the one
:func:`~metalab.analysis.plot_figure` makes from the loaded runs: the same
axes and category order, means and bands (merged from the groups' means and
sums of squared deviations), left-out counts per reason and notes; any
chart the pushdown cannot make as the loaded path would, including every
error (a field no run has, a y without numbers, too many groups), answers
None and the caller loads the runs.  Pure functions over the store's
answer; thread-safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metalab._errors import ValidationError
from metalab.analysis._deps import require
from metalab.analysis._plots_data import Axis, Numbers, as_numbers, categories, distinct
from metalab.analysis._plots_figure import (
    MAX_GROUPS,
    SAMPLE_NOTE,
    Prepared,
    bar_traces,
    figure_of,
    histogram_edges,
    histogram_traces,
    mean_traces,
    raw_traces,
)
from metalab.analysis._plots_stats import GroupStats

if TYPE_CHECKING:
    from metalab.analysis._plots_spec import PlotSpec
    from metalab.store import Store

__all__ = ["plot_runs", "pushable", "pushed_figure", "query_figure"]


def query_figure(store: Store, spec: PlotSpec, where: Any = None) -> dict[str, Any]:
    """:func:`~metalab.analysis.plot_figure` of the runs of ``store`` matching
    ``where``, computed in the store's index when it can (:func:`pushed_figure`:
    only the groups leave the index), else from the runs loaded with the
    chart's columns.  The same figure either way.

    Raises:
        ValidationError, QueryError, UnknownFieldError: as ``plot_figure`` and
            :func:`~metalab.load_results` raise them.
        MissingDependencyError: numpy or pandas is missing (extra ``ui``).
    """
    from metalab.analysis._load import load_results
    from metalab.analysis._plots_figure import build_figure

    figure = pushed_figure(store, None, where, spec)
    if figure is not None:
        return figure
    return build_figure(load_results(store, where=where, columns=spec.fields()), spec)


def plot_runs(store_or_path: Any = None, kind: str = "scatter", x: str | None = None,
              y: str | None = None, group: str | None = None, over_seeds: bool = True,
              band: str | None = "ci95", *, where: Any = None,
              experiment_id: str | None = None, bins: int = 50,
              max_points: int = 5000) -> Any:
    """A chart of the runs of a store as a plotly ``Figure``, computed in the store's
    index when it can (only what is drawn leaves it: the figure of a 10^6-run
    experiment in about a second), else from the runs loaded with the chart's
    columns.  The same figure as ``load_results(...).plot(...)``.

    ``store_or_path`` and ``experiment_id`` as for :func:`~metalab.load_results`;
    ``where`` a filter (query language text or the keyword form); the other
    settings those of :class:`~metalab.analysis.PlotSpec`.  Only reads.

    Raises:
        ValidationError, QueryError, UnknownFieldError: a bad setting, filter or field.
        NotFoundError: no such store or experiment.
        MissingDependencyError: plotly, numpy or pandas is missing (extra ``ui``).
    """
    from metalab.analysis._load import _open
    from metalab.analysis._plots import figure_object
    from metalab.analysis._plots_spec import PlotSpec

    spec = PlotSpec(kind, x, y, group, over_seeds, band, bins, max_points)
    store = _open(store_or_path, experiment_id)
    try:
        return figure_object(query_figure(store, spec, where))
    finally:
        if store is not store_or_path:  # (opened here; a store passed in stays open)
            store.close()


def pushable(spec: PlotSpec) -> bool:
    """Whether :func:`pushed_figure` can draw ``spec`` (a store permitting)."""
    return spec.kind in ("bar", "histogram", "line", "scatter")


def pushed_figure(store: Store, experiment_id: str | None, where: Any,
                  spec: PlotSpec) -> dict[str, Any] | None:
    """The figure of ``spec`` over the runs of ``where`` from the store's index, or
    None (the store cannot aggregate, the index cannot answer now, or the
    chart needs the loaded runs): then call :func:`plot_figure` on loaded runs.

    Raises:
        QuerySyntaxError, QueryError, UnknownFieldError: a bad ``where`` (as
            :func:`~metalab.load_results` raises them).
        MissingDependencyError: numpy or pandas is missing (extra ``ui``).
    """
    if not store.supports_aggregate or not pushable(spec):
        return None
    np = require("numpy", "ui", "charts")
    pd = require("pandas", "ui", "charts")
    if spec.kind == "histogram":
        return _histogram_figure(np, pd, store, experiment_id, where, spec)
    if not spec.over_seeds:
        return _raw_figure(np, pd, store, experiment_id, where, spec)
    assert spec.x is not None
    by = [spec.x] + ([spec.group] if spec.group else [])
    values = [spec.y] if spec.y else []
    groups = store.aggregate_runs(experiment_id, where, by=by, values=values)
    if groups is None:
        return None
    return figure_from_groups(np, pd, spec, groups)


def _histogram_figure(np: Any, pd: Any, store: Store, experiment_id: str | None,
                      where: Any, spec: PlotSpec) -> dict[str, Any] | None:
    """A numeric histogram from :meth:`Store.histogram_runs`: the range, then the
    counts per bin of the edges :func:`histogram_edges` gives for it (as the
    loaded path bins); None for a histogram of categories (a value that is
    not a number) and every error."""
    name = spec.x or spec.y
    assert name is not None
    kept: dict[str, Any] = {}

    def edges_of(groups: list[dict[str, Any]]) -> list[float] | None:
        if any(g["other"] for g in groups):
            return None  # (categories: the loaded path counts them)
        lows = [g["min"] for g in groups if g["finite"]]
        highs = [g["max"] for g in groups if g["finite"]]
        try:
            edges = histogram_edges(np, min(lows) if lows else None,
                                    max(highs) if highs else None, spec.bins)
        except ValidationError:
            return None  # (a range too narrow or too wide: the loaded path raises it)
        kept["edges"] = edges
        return [float(e) for e in edges.tolist()]

    groups = store.histogram_runs(experiment_id, where, value=name, group=spec.group,
                                  edges=edges_of)
    if groups is None or (groups and "edges" not in kept and any(g["finite"] for g in groups)):
        return None
    total = sum(g["n"] for g in groups)
    if total and (sum(g["missing"] for g in groups) == total
                  or any(g["other"] for g in groups)):
        return None  # (no run has the field, or categories: the loaded path)
    raw_g = [g["key"] for g in groups]
    prep = Prepared(total, None, None, None, np.ones(0, dtype=bool))
    for key, reason in (("missing", f"no {name}"), ("nan", f"{name} = NaN"),
                        ("posinf", f"{name} = inf"), ("neginf", f"{name} = -inf")):
        hit = sum(g[key] for g in groups)
        if hit:
            prep.excluded[reason] = hit
    if spec.group is not None:
        if total and all(v is None for v in raw_g):
            return None
        prep.group = categories(np, pd, raw_g, None, keep_missing=True)
        if len(prep.group.labels) > MAX_GROUPS:
            return None
        codes, glabels = prep.group.codes.tolist(), prep.group.labels
    else:
        codes, glabels = [0] * len(groups), [None]
    edges = kept.get("edges", histogram_edges(np, None, None, spec.bins))
    counts: list[Any] = [None] * len(glabels)
    for code, g in zip(codes, groups, strict=True):
        if g["finite"]:
            got = np.asarray(g["counts"], dtype=np.int64)
            counts[code] = got if counts[code] is None else counts[code] + got
    return figure_of(spec, prep, histogram_traces(np, prep, edges, counts, glabels), [])


def _raw_figure(np: Any, pd: Any, store: Store, experiment_id: str | None,
                where: Any, spec: PlotSpec) -> dict[str, Any] | None:
    """A scatter (or line) of raw points from :meth:`Store.sample_runs`: the runs
    left out counted by reason as the loaded path counts them, and a fixed
    sample of ``max_points`` runs drawn; None when the runs to draw are no
    more than that (the loaded path draws them all), for categories on x and
    for every error."""
    assert spec.x is not None and spec.y is not None
    got = store.sample_runs(experiment_id, where, x=spec.x, y=spec.y, group=spec.group,
                            limit=spec.max_points)
    if got is None or got["sample"] is None:
        return None
    classes, sample = got["classes"], got["sample"]
    total = sum(c["n"] for c in classes)

    def runs(role: str, kind: str) -> int:
        return sum(c["n"] for c in classes if c[role] == kind)

    if total in (runs("x", "missing"), runs("y", "missing"), runs("y", "other")) \
            or runs("x", "other"):
        return None  # (no run has a field, y holds no numbers, or x is categories)
    prep = Prepared(total, None, None, None, np.ones(0, dtype=bool))
    for c in classes:
        reason = _left_out(spec, c["x"], c["y"])
        if reason is not None:
            prep.excluded[reason] = prep.excluded.get(reason, 0) + c["n"]
    keys = [c["key"] for c in classes]
    if spec.group is not None:
        if all(k is None for k in keys):
            return None
        prep.group = categories(np, pd, keys + [row[3] for row in sample], None,
                                keep_missing=True)
        if len(prep.group.labels) > MAX_GROUPS:
            return None
        prep.group = Axis(prep.group.codes[len(keys):], prep.group.labels, False, None)
    xs = [row[1] for row in sample]
    prep.x = categories(np, pd, xs, as_numbers(np, xs), keep_missing=False)
    prep.y = as_numbers(np, [row[2] for row in sample])
    drawn = sum(c["n"] for c in classes if c["x"] == c["y"] == "finite")
    traces = raw_traces(np, prep, spec, np.arange(len(sample)), [row[0] for row in sample])
    return figure_of(spec, prep, traces, [SAMPLE_NOTE.format(shown=len(sample), total=drawn)])


def _left_out(spec: PlotSpec, x: str, y: str) -> str | None:
    """Why the loaded path leaves out a run whose x and y values are of the kinds
    ``x`` and ``y`` (its first reason, in the order it checks them), or None."""
    if y == "missing":
        return f"no {spec.y}"
    if x != "finite":
        return {"missing": f"no {spec.x}", "nan": f"{spec.x} = NaN"}.get(x, f"{spec.x} = ±inf")
    return {"other": f"{spec.y} not a number", "nan": f"{spec.y} = NaN",
            "posinf": f"{spec.y} = inf", "neginf": f"{spec.y} = -inf"}.get(y)


def _column(np: Any, rows: list[dict[str, Any]], key: str) -> Any:
    return np.array([r[key] if r[key] is not None else np.nan for r in rows], dtype=np.float64)


def figure_from_groups(np: Any, pd: Any, spec: PlotSpec,
                       groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The figure of ``spec`` from :meth:`Store.aggregate_runs` groups (by x, then
    group; values: y), or None where only the loaded runs give the answer (errors)."""
    n = np.array([g["n"] for g in groups], dtype=np.int64)
    total = int(n.sum())
    raw_x = [g["keys"][0] for g in groups]
    raw_g = [g["keys"][1] for g in groups] if spec.group else None
    if total and (all(v is None for v in raw_x)
                  or (raw_g is not None and all(v is None for v in raw_g))):
        return None  # (no run has the field: the loaded path names close ones)
    alive = n.copy()
    prep = Prepared(total, None, None, None, np.ones(len(groups), dtype=bool))

    def drop(counts: Any, reason: str) -> None:
        hit = int(counts.sum())
        if hit:
            prep.excluded[reason] = prep.excluded.get(reason, 0) + hit
        alive[:] -= counts

    ys = [g["values"][0] for g in groups] if spec.y else None
    if ys is not None:
        other = np.array([v["other"] for v in ys], dtype=np.int64)
        missing = np.array([v["missing"] for v in ys], dtype=np.int64)
        if total and (int(missing.sum()) == total or int(other.sum()) == total):
            return None
        prep.y = Numbers(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
        drop(missing, f"no {spec.y}")
    x_nums = as_numbers(np, raw_x)
    drop(np.where(x_nums.missing, alive, 0), f"no {spec.x}")
    prep.x = categories(np, pd, raw_x, x_nums, keep_missing=False)
    if prep.x.numeric:
        drop(np.where(np.isnan(x_nums.values) & ~x_nums.missing, alive, 0), f"{spec.x} = NaN")
        drop(np.where(np.isinf(x_nums.values), alive, 0), f"{spec.x} = ±inf")
    if raw_g is not None:
        prep.group = categories(np, pd, raw_g, None, keep_missing=True)
        if len(prep.group.labels) > MAX_GROUPS:
            return None
        gcodes, glabels = prep.group.codes, prep.group.labels
    else:
        gcodes, glabels = np.zeros(len(groups), dtype=np.int64), [None]
    if ys is not None:
        drop(np.where(alive > 0, other, 0), f"{spec.y} not a number")
    kept = alive > 0
    nx = max(len(prep.x.labels), 1)
    keys, inverse = distinct(pd, gcodes[kept] * nx + prep.x.codes[kept])
    stats = _merged(np, inverse, len(keys), alive[kept],
                    [v for v, k in zip(ys, kept.tolist(), strict=True) if k] if ys else None)
    build = bar_traces if spec.kind == "bar" else mean_traces
    traces, notes = build(np, prep, spec, keys, nx, stats, glabels)
    return figure_of(spec, prep, traces, notes)


def _merged(np: Any, inverse: Any, n_cells: int, runs: Any,
            ys: list[dict[str, Any]] | None) -> GroupStats:
    """The statistics of each cell (chart point) from its groups' (``inverse``: the
    cell of each group; ``runs``: the runs each group keeps): counts add up,
    means and sums of squared deviations merge exactly (Chan et al.)."""
    n = np.bincount(inverse, weights=runs, minlength=n_cells).astype(np.int64)
    if ys is None:  # (counting bars: every kept run counts, no statistics)
        zeros = np.zeros(n_cells)
        with np.errstate(invalid="ignore"):
            std = np.where(n > 1, 0.0, np.nan)
        return GroupStats(n=n, n_finite=n, mean=zeros, std=std)
    k = np.array([v["finite"] for v in ys], dtype=np.int64)
    means = np.nan_to_num(_column(np, ys, "mean"))
    m2s = np.nan_to_num(_column(np, ys, "m2"))
    n_finite = np.bincount(inverse, weights=k, minlength=n_cells).astype(np.int64)
    sums = np.bincount(inverse, weights=k * means, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_finite > 0, sums / np.maximum(n_finite, 1), np.nan)
        shift = np.where(k > 0, means - mean[inverse], 0.0)
        m2 = np.bincount(inverse, weights=m2s + k * shift * shift, minlength=n_cells)
        std = np.where(n_finite > 1, np.sqrt(m2 / np.maximum(n_finite - 1, 1)), np.nan)
    return GroupStats(n=n, n_finite=n_finite, mean=mean, std=std)
