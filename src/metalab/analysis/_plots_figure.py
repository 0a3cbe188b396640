"""Building the plotly figure dict of a :class:`~metalab.analysis.PlotSpec`.

See :func:`metalab.analysis.plot_figure` for the contract.  Every text that
comes from the runs (field names, group values, category labels) is
HTML-escaped before it goes into the figure: plotly renders a subset of HTML
in titles, names and labels, and the entities display as the characters.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metalab._errors import ValidationError
from metalab.analysis._deps import require
from metalab.analysis._plots_data import (
    Axis,
    Numbers,
    as_numbers,
    categories,
    columns_of,
    distinct,
    label,
    require_present,
)
from metalab.analysis._plots_sample import sample_indices, spread_indices
from metalab.analysis._plots_stats import GroupStats, band_width, group_stats

if TYPE_CHECKING:
    from metalab.analysis._plots_spec import PlotSpec
    from metalab.analysis._tables import ResultsView

__all__ = ["Prepared", "add_notes", "bar_traces", "build_figure", "esc", "figure_of",
           "finite_list", "histogram_edges", "histogram_traces", "mean_traces", "raw_traces"]

#: past this many points in one figure, scatter traces use WebGL (``scattergl``)
WEBGL_AFTER = 1000
#: the note of a scatter of a sample of the runs
SAMPLE_NOTE = "{shown} of {total} runs shown (a fixed random sample)"
#: the most groups (colours) a chart draws
MAX_GROUPS = 100
#: points a line's band sends for each point of the line (its upper and lower edge)
BAND_POINTS = 2
#: opacity of a line's band and of overlaid histogram bars
BAND_OPACITY = 0.2
HIST_OPACITY = 0.6
#: top margin of a figure (pixels) and the room each line of notes above the plot takes
NOTE_MARGIN = 40
NOTE_LINE = 18
#: the palette (plotly's default), cycled over the groups
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52")


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def finite_list(np: Any, values: Any) -> list[float | None]:
    """Floats as a list with ``None`` where not finite (plain JSON)."""
    arr = np.asarray(values, dtype=float)
    out: list[float | None] = arr.tolist()
    if not np.isfinite(arr).all():
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            out[i] = None
    return out


@dataclass
class Prepared:
    """The rows a chart uses: ``keep`` marks them; ``excluded`` counts the rest by reason."""

    n_runs: int
    x: Axis | None
    y: Numbers | None
    group: Axis | None
    keep: Any
    excluded: dict[str, int] = field(default_factory=dict)
    #: the raw values of y (histograms of non-numeric values count them)
    raw_y: list[Any] | None = None

    def drop(self, np: Any, mask: Any, reason: str) -> None:
        hit = int(np.count_nonzero(mask & self.keep))
        if hit:
            self.excluded[reason] = self.excluded.get(reason, 0) + hit
            self.keep &= ~mask


def build_figure(results: ResultsView, spec: PlotSpec) -> dict[str, Any]:
    np = require("numpy", "ui", "charts")
    pd = require("pandas", "ui", "charts")
    prep = _prepare(np, pd, results, spec)
    if spec.kind == "histogram":
        traces, notes = _histogram(np, prep, spec)
    elif spec.kind == "bar":
        traces, notes = _bars(np, pd, prep, spec)
    elif spec.over_seeds:
        traces, notes = _aggregated(np, pd, prep, spec)
    else:
        traces, notes = _raw_points(np, results, prep, spec)
    return _figure(spec, prep, traces, notes)


def figure_of(spec: PlotSpec, prep: Prepared, traces: list[dict[str, Any]],
              notes: list[str]) -> dict[str, Any]:
    """The figure dict of ``traces`` (titles, notes, ``layout.meta.metalab``)."""
    return _figure(spec, prep, traces, notes)


def _prepare(np: Any, pd: Any, results: ResultsView, spec: PlotSpec) -> Prepared:
    """Read the fields of ``spec`` and mark the rows that can be drawn."""
    value_field = spec.x if spec.kind == "histogram" and spec.x is not None else None
    x_field = None if spec.kind == "histogram" else spec.x
    y_field = (spec.y if spec.kind != "histogram" else (value_field or spec.y))
    wanted = [f for f in (x_field, y_field, spec.group) if f]
    got = dict(zip(wanted, columns_of(results, wanted), strict=True))
    raw_x = got[x_field] if x_field else None
    raw_y = got[y_field] if y_field else None
    raw_g = got[spec.group] if spec.group else None
    n = len(raw_x if raw_x is not None else raw_y if raw_y is not None else [])
    if raw_x is None and raw_y is None:  # (a spec always names one of them)
        raise ValidationError("the chart names no field")
    for role, name, raw in (("x", x_field, raw_x), ("y", y_field, raw_y),
                            ("group", spec.group, raw_g)):
        if name is not None and raw is not None:
            require_present(results, name, raw, role)
    prep = Prepared(n, None, None, None, np.ones(n, dtype=bool))
    if raw_y is not None:
        prep.raw_y = raw_y
        prep.y = as_numbers(np, raw_y)
        if n and prep.y.other.all() and spec.kind != "histogram":
            raise ValidationError(f"y field {y_field!r} holds no numbers; use it as x or group")
        prep.drop(np, prep.y.missing, f"no {y_field}")
    if raw_x is not None:
        x_nums = as_numbers(np, raw_x)
        prep.drop(np, x_nums.missing, f"no {x_field}")
        prep.x = categories(np, pd, raw_x, x_nums, keep_missing=False)
        if prep.x.numeric:
            prep.drop(np, np.isnan(x_nums.values) & ~x_nums.missing, f"{x_field} = NaN")
            prep.drop(np, np.isinf(x_nums.values), f"{x_field} = ±inf")
    if raw_g is not None:
        prep.group = categories(np, pd, raw_g, None, keep_missing=True)
        if len(prep.group.labels) > MAX_GROUPS:
            raise ValidationError(
                f"group field {spec.group!r} has {len(prep.group.labels)} distinct values; "
                f"a chart shows at most {MAX_GROUPS} groups: group by a field with fewer")
    return prep


def _drop_non_finite_y(np: Any, prep: Prepared, name: str) -> None:
    y = prep.y
    assert y is not None
    prep.drop(np, y.other, f"{name} not a number")
    prep.drop(np, np.isnan(y.values) & ~y.other & ~y.missing, f"{name} = NaN")
    prep.drop(np, np.isposinf(y.values), f"{name} = inf")
    prep.drop(np, np.isneginf(y.values), f"{name} = -inf")


def _group_codes(np: Any, prep: Prepared) -> tuple[Any, list[Any]]:
    if prep.group is None:
        return np.zeros(prep.n_runs, dtype=np.int64), [None]
    return prep.group.codes, prep.group.labels


def _trace_base(i: int, name: Any, grouped: bool) -> dict[str, Any]:
    colour = PALETTE[i % len(PALETTE)]
    base: dict[str, Any] = {"marker": {"color": colour}, "legendgroup": str(i)}
    if grouped:
        base["name"] = esc(label(name))
    else:
        base["showlegend"] = False
    return base


def _x_values(prep: Prepared, codes: Any) -> list[Any]:
    assert prep.x is not None
    labels = prep.x.labels
    if prep.x.numeric:
        return [labels[c] for c in codes.tolist()]
    return [esc(label(labels[c])) for c in codes.tolist()]


def _aggregated(np: Any, pd: Any, prep: Prepared, spec: PlotSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """Mean of y per (group, x) with a band: markers with error bars, or a line with a band."""
    assert prep.x is not None and prep.y is not None and spec.y is not None
    prep.drop(np, prep.y.other, f"{spec.y} not a number")
    gcodes, glabels = _group_codes(np, prep)
    nx = max(len(prep.x.labels), 1)
    keep = prep.keep
    combined = gcodes[keep] * nx + prep.x.codes[keep]
    keys, inverse = distinct(pd, combined)
    stats = group_stats(np, inverse, prep.y.values[keep], len(keys))
    return mean_traces(np, prep, spec, keys, nx, stats, glabels)


def mean_traces(np: Any, prep: Prepared, spec: PlotSpec, keys: Any, nx: int,
                stats: GroupStats, glabels: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The traces of :func:`_aggregated` from the statistics of each point
    (``keys``: group code * ``nx`` + x code of each, ascending)."""
    assert prep.x is not None and spec.y is not None
    width = band_width(np, stats, spec.band)
    nonfinite = stats.n - stats.n_finite
    if nonfinite.any():
        prep.excluded[f"{spec.y} = inf or NaN"] = int(nonfinite.sum())
    has_mean = stats.n_finite > 0
    # (a line's band sends an upper and a lower point for each mean: max_points
    # counts them all)
    sent = BAND_POINTS + 1 if spec.kind == "line" and spec.band is not None else 1
    budget = _share(np, keys // nx, has_mean, len(glabels), spec.max_points // sent)
    notes: list[str] = []
    if budget.sampled:
        notes.append(f"{budget.shown} of {budget.total} points shown (evenly spaced)")
    single = int(np.count_nonzero(stats.n_finite == 1))
    if spec.band is not None and single:
        notes.append(f"{single} point(s) with one run: no {spec.band} band")
    traces: list[dict[str, Any]] = []
    for g in range(len(glabels)):
        rows = budget.rows.get(g)
        if rows is None or not len(rows):
            continue
        xs = _x_values(prep, keys[rows] % nx)
        mean, half = stats.mean[rows], width[rows]
        custom = np.stack([stats.n_finite[rows], nonfinite[rows]], axis=1).tolist()
        base = _trace_base(g, glabels[g], prep.group is not None)
        hover = ("%{x}: %{y:.6g}" + (f" ± %{{error_y.array:.3g}} ({spec.band})"
                                    if spec.band and spec.kind == "scatter" else "")
                 + "<br>n = %{customdata[0]}, left out (inf/NaN) = %{customdata[1]}")
        if spec.kind == "line":
            traces += _band_trace(np, g, xs, mean, half, spec)
            trace = {**base, "type": "scatter", "mode": "lines+markers",
                     "line": {"color": base["marker"]["color"]}}
        else:
            trace = {**base, "type": "scatter", "mode": "markers"}
            if spec.band is not None:
                trace["error_y"] = {"type": "data", "array": finite_list(np, half),
                                    "visible": True}
        trace.update(x=xs, y=finite_list(np, mean), customdata=custom, hovertemplate=hover)
        traces.append(trace)
    return traces, notes


def _band_trace(np: Any, g: int, xs: list[Any], mean: Any, half: Any,
                spec: PlotSpec) -> list[dict[str, Any]]:
    """The filled band of a line (zero width where the band is unknown)."""
    if spec.band is None:
        return []
    half = np.where(np.isfinite(half), half, 0.0)
    upper, lower = mean + half, mean - half
    return [{
        "type": "scatter", "mode": "lines", "x": xs + xs[::-1],
        "y": finite_list(np, np.concatenate([upper, lower[::-1]])),
        "fill": "toself", "line": {"width": 0}, "opacity": BAND_OPACITY,
        "fillcolor": PALETTE[g % len(PALETTE)], "hoverinfo": "skip", "showlegend": False,
        "legendgroup": str(g), "name": spec.band,
    }]


@dataclass
class _Budget:
    rows: dict[int, Any]
    total: int
    shown: int
    sampled: bool


def _share(np: Any, groups: Any, usable: Any, n_groups: int, max_points: int) -> _Budget:
    """Positions to draw per group: all usable ones, or evenly spaced ones within
    ``max_points`` shared in proportion to each group's size."""
    total = int(np.count_nonzero(usable))
    rows_of = [np.flatnonzero((groups == g) & usable) for g in range(n_groups)]
    if total > max_points:
        quotas = [(len(rows) * max_points) // total for rows in rows_of]
        spare = max_points - sum(quotas)
        for g, rows in enumerate(rows_of):  # a group too small for its own point gets one
            if spare and len(rows) and not quotas[g]:
                quotas[g], spare = 1, spare - 1
        rows_of = [rows[spread_indices(np, len(rows), q)] for rows, q in zip(rows_of, quotas,
                                                                             strict=True)]
    shown = sum(len(rows) for rows in rows_of)
    return _Budget(dict(enumerate(rows_of)), total, shown, shown < total)


def _raw_points(np: Any, results: ResultsView, prep: Prepared,
                spec: PlotSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """One point per run (a fixed-seed sample past ``max_points``)."""
    assert prep.x is not None and prep.y is not None and spec.y is not None
    _drop_non_finite_y(np, prep, spec.y)
    rows = np.flatnonzero(prep.keep)
    notes: list[str] = []
    total = len(rows)
    if total > spec.max_points:
        rows = rows[sample_indices(np, total, spec.max_points)]
        notes.append(SAMPLE_NOTE.format(shown=len(rows), total=total))
    return raw_traces(np, prep, spec, rows, results._column("run_id")), notes


def raw_traces(np: Any, prep: Prepared, spec: PlotSpec, rows: Any,
               run_ids: list[str]) -> list[dict[str, Any]]:
    """The traces of :func:`_raw_points`: the runs at positions ``rows`` of ``prep``
    (and of ``run_ids``), one trace per group."""
    assert prep.x is not None and prep.y is not None
    gcodes, glabels = _group_codes(np, prep)
    kind = "scattergl" if len(rows) > WEBGL_AFTER else "scatter"
    traces = []
    for g in range(len(glabels)):
        mine = rows[gcodes[rows] == g]
        if not len(mine):
            continue
        if spec.kind == "line":  # a line runs along x
            order = np.argsort(prep.x.codes[mine], kind="stable")
            mine = mine[order]
        base = _trace_base(g, glabels[g], prep.group is not None)
        trace = {**base, "type": kind,
                 "mode": "lines+markers" if spec.kind == "line" else "markers",
                 "x": _x_values(prep, prep.x.codes[mine]),
                 "y": finite_list(np, prep.y.values[mine]),
                 "customdata": [esc(run_ids[i]) for i in mine.tolist()],
                 "hovertemplate": "%{x}: %{y:.6g}<br>run %{customdata}"}
        traces.append(trace)
    return traces


def _bars(np: Any, pd: Any, prep: Prepared, spec: PlotSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """Per x value (and group): the mean of y with its band, or without y the run count."""
    assert prep.x is not None
    gcodes, glabels = _group_codes(np, prep)
    nx = max(len(prep.x.labels), 1)
    if prep.y is not None and spec.y is not None:
        prep.drop(np, prep.y.other, f"{spec.y} not a number")
    keep = prep.keep
    combined = gcodes[keep] * nx + prep.x.codes[keep]
    keys, inverse = distinct(pd, combined)
    values = prep.y.values[keep] if prep.y is not None else np.zeros(len(inverse))
    stats = group_stats(np, inverse, values, len(keys))
    return bar_traces(np, prep, spec, keys, nx, stats, glabels)


def bar_traces(np: Any, prep: Prepared, spec: PlotSpec, keys: Any, nx: int,
               stats: GroupStats, glabels: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The traces of :func:`_bars` from the statistics of each bar (``keys`` as in
    :func:`mean_traces`; without ``prep.y`` the bars count runs: ``stats.n``)."""
    assert prep.x is not None
    counting = prep.y is None
    if not counting:
        nonfinite = stats.n - stats.n_finite
        if nonfinite.any():
            prep.excluded[f"{spec.y} = inf or NaN"] = int(nonfinite.sum())
    band = spec.band if spec.over_seeds and not counting else None
    width = band_width(np, stats, band)
    budget = _share(np, keys // nx, stats.n_finite > 0, len(glabels), spec.max_points)
    notes = [f"{budget.shown} of {budget.total} bars shown"] if budget.sampled else []
    traces = []
    for g in range(len(glabels)):
        rows = budget.rows.get(g)
        if rows is None or not len(rows):
            continue
        xs = [esc(label(prep.x.labels[c])) for c in (keys[rows] % nx).tolist()]
        ys = stats.n[rows].tolist() if counting else finite_list(np, stats.mean[rows])
        trace = {**_trace_base(g, glabels[g], prep.group is not None), "type": "bar",
                 "x": xs, "y": ys,
                 "customdata": stats.n_finite[rows].tolist(),
                 "hovertemplate": "%{x}: %{y:.6g}<br>n = %{customdata}"}
        if band is not None:
            trace["error_y"] = {"type": "data", "array": finite_list(np, width[rows]),
                                "visible": True}
        traces.append(trace)
    return traces, notes


def _histogram(np: Any, prep: Prepared, spec: PlotSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """Counts per bin of a numeric field (per category of another), binned here."""
    name = spec.x or spec.y
    nums = prep.y
    assert nums is not None and name is not None
    gcodes, glabels = _group_codes(np, prep)
    if not nums.other.any():  # (numeric)
        _drop_non_finite_y(np, prep, name)
        finite = nums.values[prep.keep]
        edges = histogram_edges(np, float(finite.min()) if len(finite) else None,
                                float(finite.max()) if len(finite) else None, spec.bins)
        counts = [np.histogram(nums.values[mine], bins=edges)[0] if mine.any() else None
                  for mine in (prep.keep & (gcodes == g) for g in range(len(glabels)))]
        return histogram_traces(np, prep, edges, counts, glabels), []
    traces = []
    for g in range(len(glabels)):
        mine = prep.keep & (gcodes == g)
        if not mine.any():
            continue
        trace = _category_counts(np, _trace_base(g, glabels[g], prep.group is not None),
                                 prep, mine)
        if len(glabels) > 1:
            trace["opacity"] = HIST_OPACITY
        traces.append(trace)
    return traces, []


def histogram_edges(np: Any, low: float | None, high: float | None, bins: int) -> Any:
    """The bin edges of a histogram of finite values from ``low`` to ``high`` (None:
    no value): ``numpy.histogram_bin_edges`` over that range.

    Raises:
        ValidationError: the range is too narrow for ``bins`` distinct float64 edges,
            or too wide for float64.
    """
    if low is None or high is None:
        return np.linspace(0.0, 1.0, bins + 1)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # (checked below)
            edges = np.histogram_bin_edges(np.array([low, high]), bins=bins, range=(low, high))
    except ValueError as exc:  # (edges that round onto each other)
        raise ValidationError(
            f"{bins} bins cannot split the values from {low!r} to {high!r} (float64 has "
            f"too few numbers between them: {exc}); use fewer bins") from exc
    if not np.isfinite(edges).all():
        raise ValidationError(f"the values from {low!r} to {high!r} span more than float64 "
                              "holds: no bins of equal width; filter out the extremes")
    return edges


def histogram_traces(np: Any, prep: Prepared, edges: Any, counts: list[Any],
                     glabels: list[Any]) -> list[dict[str, Any]]:
    """The bars of a numeric histogram: ``counts[g]``, the runs per bin of group
    code ``g`` (None: the group keeps no run, no trace)."""
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    widths = np.diff(edges).tolist()
    traces = []
    for g, got in enumerate(counts):
        if got is None:
            continue
        trace = {**_trace_base(g, glabels[g], prep.group is not None), "type": "bar",
                 "x": centres, "y": np.asarray(got).tolist(), "width": widths,
                 "hovertemplate": "%{x:.4g}: %{y} runs"}
        if len(glabels) > 1:
            trace["opacity"] = HIST_OPACITY
        traces.append(trace)
    return traces


def _category_counts(np: Any, base: dict[str, Any], prep: Prepared, mine: Any) -> dict[str, Any]:
    """Run counts per distinct value of a non-numeric field (a histogram of categories)."""
    assert prep.raw_y is not None
    raw = [v for v, m in zip(prep.raw_y, mine.tolist(), strict=True) if m]
    counts: dict[str, int] = {}
    for v in raw:
        key = esc(label(v))
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts)
    return {**base, "type": "bar", "x": ordered, "y": [counts[k] for k in ordered],
            "hovertemplate": "%{x}: %{y} runs"}


def _figure(spec: PlotSpec, prep: Prepared, traces: list[dict[str, Any]],
            notes: list[str]) -> dict[str, Any]:
    shown_out = [f"{count} {esc(reason)}" for reason, count in sorted(prep.excluded.items())]
    lines = list(notes)
    if shown_out:
        lines.append(f"left out: {', '.join(shown_out)}")
    if not prep.n_runs:
        lines.append("no runs")
    value = spec.x or spec.y if spec.kind == "histogram" else spec.y
    if spec.kind == "histogram" or (spec.kind == "bar" and spec.y is None):
        y_title = "runs"
    else:
        y_title = esc(value) + (" (mean)" if spec.over_seeds or spec.kind == "bar" else "")
    x_title = esc(value if spec.kind == "histogram" else spec.x)
    layout: dict[str, Any] = {
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "legend": {"title": {"text": esc(spec.group)}} if spec.group else {},
        "showlegend": spec.group is not None,
        "meta": {"metalab": {
            "spec": spec.to_query(), "runs": prep.n_runs,
            "points": sum(len(t.get("y") or ()) for t in traces if t.get("fill") is None),
            "excluded": dict(sorted(prep.excluded.items())), "notes": notes,
        }},
    }
    if spec.kind in ("bar", "histogram"):
        layout["barmode"] = "overlay" if spec.kind == "histogram" else "group"
    add_notes(layout, lines)
    return {"data": traces, "layout": layout}


def add_notes(layout: dict[str, Any], lines: list[str]) -> None:
    """Show ``lines`` (already escaped) above the plot area, with room for them."""
    layout["margin"] = {"t": NOTE_MARGIN + NOTE_LINE * len(lines)}
    if lines:
        layout["annotations"] = [{
            "text": "<br>".join(lines), "xref": "paper", "yref": "paper", "x": 0, "y": 1,
            "yanchor": "bottom", "xanchor": "left", "showarrow": False, "align": "left",
            "font": {"size": 11},
        }]
