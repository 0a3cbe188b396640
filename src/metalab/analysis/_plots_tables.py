"""Replicate tables and metric-series figures (see :mod:`metalab.analysis._plots`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import ValidationError
from metalab.analysis._deps import require
from metalab.analysis._plots_data import (
    as_numbers,
    categories,
    columns_of,
    distinct,
    hashable,
    require_present,
)
from metalab.analysis._plots_figure import PALETTE, WEBGL_AFTER, add_notes, esc, finite_list
from metalab.analysis._plots_sample import minmax_indices
from metalab.analysis._plots_stats import band_width, group_stats

if TYPE_CHECKING:
    from metalab.analysis._tables import ResultsView

__all__ = ["build_replicate_table", "build_series_figure", "param_names"]


def param_names(results: ResultsView) -> list[str]:
    """Every parameter name the runs have, in first-seen order (keys of a run sorted)."""
    seen: dict[str, None] = {}
    table = results._cols
    if table is not None and "params" not in table.objects:
        return [name for ns, name in table.fields if ns == "params"]
    last: Any = None
    for m in results._maps("params"):
        keys = m.keys()
        if keys == last:
            continue
        last = keys
        seen.update(dict.fromkeys(sorted(m)))
    return list(seen)


def build_replicate_table(results: ResultsView, values: Sequence[str],
                          band: str | None) -> dict[str, Any]:
    np = require("numpy", "ui", "replicate tables")
    pd = require("pandas", "ui", "replicate tables")
    names = param_names(results)
    fetched = columns_of(results, [f"params.{name}" for name in names] + list(values))
    raw_params, raw_values = fetched[:len(names)], fetched[len(names):]
    n = len(raw_params[0]) if raw_params else len(results._column("run_id"))
    # one integer per parameter case: combine the codes of every param
    case = np.zeros(n, dtype=np.int64)
    for raw in raw_params:
        axis = categories(np, pd, raw, None, keep_missing=True)
        case = case * max(len(axis.labels), 1) + axis.codes
        case = distinct(pd, case)[1].astype(np.int64)
    n_cases = int(case.max()) + 1 if n else 0
    inverse = case
    first = np.full(n_cases, n, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(n))
    columns = [f"params.{name}" for name in names] + ["n"]
    cells: list[list[Any]] = [[raw[i] for i in first.tolist()] for raw in raw_params]
    cells.append(np.bincount(inverse, minlength=n_cases).tolist())
    for field, raw in zip(values, raw_values, strict=True):
        require_present(results, field, raw, "value")
        nums = as_numbers(np, raw)
        if len(raw) and nums.other.all():
            raise ValidationError(f"value field {field!r} holds no numbers")
        usable = np.where(nums.other | nums.missing, np.nan, nums.values)
        stats = group_stats(np, inverse, usable, n_cases)
        columns += [f"{field}.mean"] + ([f"{field}.{band}"] if band else []) + [f"{field}.n"]
        cells.append(finite_list(np, stats.mean))
        if band:
            cells.append(finite_list(np, band_width(np, stats, band)))
        cells.append(stats.n_finite.tolist())
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    order = sorted(range(len(rows)), key=lambda i: [_sort_key(v) for v in rows[i][:len(names)]])
    return {"columns": columns, "rows": [rows[i] for i in order]}


def _sort_key(value: Any) -> tuple[int, Any]:
    value = hashable(value)
    if value is None:
        return (3, "")
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int | float):
        return (1, value if value == value else float("inf"))
    return (2, str(value))


def _only(series: Mapping[str, Any]) -> str | None:
    """The name of the one series of ``series`` (None: none or several)."""
    return next(iter(series)) if len(series) == 1 else None


def build_series_figure(series: Mapping[str, Sequence[tuple[int, float]]], max_points: int,
                        title: str | None, y_title: str | None = None) -> dict[str, Any]:
    np = require("numpy", "ui", "series charts")
    traces = []
    left_out: dict[str, int] = {}
    sampled = 0
    for i, (name, points) in enumerate(series.items()):
        steps = np.array([p[0] for p in points], dtype=float)
        vals = np.array([p[1] for p in points], dtype=float)
        ok = np.isfinite(vals) & np.isfinite(steps)
        for reason, mask in (("NaN", np.isnan(vals)), ("inf", np.isposinf(vals)),
                             ("-inf", np.isneginf(vals))):
            if mask.any():
                left_out[reason] = left_out.get(reason, 0) + int(mask.sum())
        steps, vals = steps[ok], vals[ok]
        order = np.argsort(steps, kind="stable")
        steps, vals = steps[order], vals[order]
        keep = minmax_indices(np, vals, max_points)
        if len(keep) < len(vals):
            sampled += 1
        traces.append({
            "type": "scattergl" if len(keep) > WEBGL_AFTER else "scatter", "mode": "lines",
            "name": esc(name), "x": steps[keep].tolist(), "y": finite_list(np, vals[keep]),
            "line": {"color": PALETTE[i % len(PALETTE)]},
            "hovertemplate": "step %{x}: %{y:.6g}",
        })
    notes = []
    if sampled:
        notes.append(f"{sampled} series downsampled to at most {max_points} points "
                     "(min and max per bucket)")
    if left_out:
        notes.append("not drawn: " + ", ".join(f"{c} {r}" for r, c in left_out.items()))
    layout: dict[str, Any] = {
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": esc(y_title or _only(series) or "value")}},
        "showlegend": len(traces) > 1,
        "meta": {"metalab": {"left_out": left_out, "notes": notes}},
    }
    if title:
        layout["title"] = {"text": esc(title)}
    add_notes(layout, notes)
    return {"data": traces, "layout": layout}
