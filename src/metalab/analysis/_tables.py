"""Column tables of Results for Arrow / polars / Parquet, long metric series, replicate aggregates.

Functions here take a :class:`~metalab.analysis.Results` and are exposed as
its methods (``to_arrow``, ``to_polars``, ``to_parquet``, ``metric_series``,
``aggregate``).  pyarrow, polars and pandas are imported only when called.
They see a Results only through :class:`ResultsView` (what they read of
it), so this module does not import ``_results``, which imports it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from metalab._errors import CorruptRecordError, ValidationError
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._json import decode_list, dumps
from metalab._internal._time import from_iso
from metalab.analysis._deps import require
from metalab.analysis._frames import naming
from metalab.model import Status

if TYPE_CHECKING:
    from metalab.analysis._columns import RunTable
    from metalab.analysis._context import ResultsContext


class ResultsView(Protocol):
    """What the functions of this module read of a :class:`~metalab.analysis.Results`."""

    _ctx: ResultsContext
    _cols: RunTable | None

    @property
    def _docs(self) -> tuple[dict[str, Any], ...]: ...

    def _column(self, name: str) -> list[Any]: ...

    def _maps(self, namespace: str) -> list[dict[str, Any]]: ...

    def _derived_list(self, experiments: Iterable[str] | None = None) -> list[dict[str, Any]]: ...


__all__ = ["STATS", "aggregate", "column_lists", "metric_series", "to_arrow", "to_parquet",
           "to_polars"]

RECORD_COLUMNS = ("experiment_id", "status", "started_at", "finished_at", "duration_ms",
                   "context_fingerprint")
#: statistics accepted by :func:`aggregate`
STATS = ("count", "mean", "std", "sem", "min", "max", "median")


def _keys(maps: list[dict[str, Any]], sort_each: bool = False) -> list[str]:
    """Keys in order of first appearance; ``sort_each``: each map's keys taken sorted.

    Record documents hold their keys sorted; objects from the PostgreSQL
    index (JSONB) do not, so theirs are sorted to give the same columns.
    """
    seen: dict[str, None] = {}
    last: Any = None
    for m in maps:
        if sort_each:
            if m.keys() == last:
                continue
            last = m.keys()
            keys: Any = sorted(m)
        else:
            keys = m
        for k in keys:
            seen.setdefault(k, None)
    return list(seen)


def column_lists(results: ResultsView, include_derived: bool = True) -> dict[str, list[Any]]:
    """Column name -> Python values, named as in :meth:`Results.to_dataframe`."""
    col_of = results._column  # from the index's columns when the results have them
    cols: dict[str, list[Any]] = {"run_id": list(col_of("run_id"))}
    cols["experiment_id"] = list(col_of("experiment_id"))
    cols["status"] = list(col_of("status"))
    for name in ("started_at", "finished_at"):
        values = []
        for text in col_of(name):
            try:
                values.append(from_iso(text))
            except (ValueError, TypeError):
                values.append(None)
        cols[name] = values
    cols["duration_ms"] = [
        v if isinstance(v, int | float) and not isinstance(v, bool) else None
        for v in col_of("duration_ms")
    ]
    cols["context_fingerprint"] = [v or None for v in col_of("context_fingerprint")]
    params = results._maps("params")
    metrics = results._maps("metrics")
    indexed = results._cols is not None
    n = naming()
    for k in _keys(params, indexed):
        cols[n.param(k)] = [p.get(k) for p in params]
    for k in _keys(metrics, indexed):
        column = f"{n.metric_clash}{k}" if (k in cols or k in RECORD_COLUMNS) else k
        cols[column] = [m.get(k) for m in metrics]
    if include_derived:
        derived = results._derived_list()
        if derived:
            for k in _keys(derived):
                cols[n.derived_column(k)] = [m.get(k) for m in derived]
    return cols


def _arrow_array(pa: Any, values: list[Any]) -> Any:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # mixed or nested values: keep them readable as JSON text
        return pa.array(
            [None if v is None else (v if isinstance(v, str) else dumps(v).decode())
             for v in values],
            type=pa.string(),
        )


def to_arrow(results: ResultsView, include_derived: bool = True) -> Any:
    """A ``pyarrow.Table`` with the columns of :meth:`Results.to_dataframe`.

    A column whose values have no common Arrow type (e.g. ints and strings)
    holds them as JSON text.
    """
    pa = require("pyarrow", "pandas", "Results.to_arrow()")
    cols = column_lists(results, include_derived)
    arrays = {}
    for name, values in cols.items():
        if name in ("started_at", "finished_at"):
            arrays[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
        elif name == "duration_ms":
            arrays[name] = pa.array(values, type=pa.float64())
        else:
            arrays[name] = _arrow_array(pa, values)
    return pa.table(arrays)


def to_polars(results: ResultsView, include_derived: bool = True) -> Any:
    """A ``polars.DataFrame`` (built from :func:`to_arrow`)."""
    pl = require("polars", "polars", "Results.to_polars()")
    return pl.from_arrow(to_arrow(results, include_derived))


def to_parquet(results: ResultsView, path: str | os.PathLike[str], include_derived: bool = True) -> str:
    """Write :func:`to_arrow` as Parquet to ``path`` atomically; returns the path."""
    require("pyarrow", "pandas", "Results.to_parquet()")
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(to_arrow(results, include_derived), buf)
    atomic_write_bytes(path, buf.getvalue())
    return os.fspath(path)


def _series_of(ctx: Any, doc: dict[str, Any], wanted: list[str]
               ) -> dict[str, tuple[list[Any], list[Any]]]:
    """``{name: (steps, values)}`` of the ``wanted`` series of one run: for a run
    loaded as ``running``, the steps written so far (its live series file),
    else the series stored with its final record.  An unreadable file is
    reported (as for unreadable runs) and its series left out."""
    store = ctx.store_for(doc["experiment_id"])
    rid = doc["run_id"]
    found: dict[str, tuple[list[Any], list[Any]]] = {}
    if doc.get("status") == Status.RUNNING.value:
        try:
            live = store.read_live_series(rid, doc.get("attempt") or 1)
        except OSError as exc:
            path = store.live_series_path(rid) if store.supports_live_series else None
            if ctx._report:
                ctx._report(CorruptRecordError(
                    f"the live series of running run {rid} cannot be read ({exc}); its "
                    "steps so far are left out", path))
            live = {}
        found = {name: (list(live[name][0]), list(live[name][1]))
                 for name in wanted if name in live}
    listed = doc.get("series")
    for name in wanted:
        if name in found or (isinstance(listed, list) and name not in listed):
            continue
        try:
            payload = store.get_data(rid, name)
        except CorruptRecordError as exc:
            ctx._report(exc) if ctx._report else None
            continue
        if payload and payload.get("kind") == "series":
            data = payload.get("data") or {}
            found[name] = (list(data.get("step") or []), list(data.get("value") or []))
    return {name: found[name] for name in wanted if name in found}


def metric_series(results: ResultsView, names: str | Iterable[str]) -> Any:
    """The stepped series ``names`` of every run as one tidy pandas DataFrame.

    One row per run, series and step.  Columns ``run_id``, ``experiment_id``,
    then the run's parameters as ``params.<name>`` (every parameter any of
    the runs has; ``None`` where a run has none), then ``name``, ``step``,
    ``value`` (a float; a missing value is NaN).  A run loaded as ``running``
    gives the steps it has written so far (as :meth:`Run.metric_series
    <metalab.analysis.Run.metric_series>`).  Runs without a series are
    left out (nothing is raised for them).  Unreadable series files are
    reported like unreadable runs and skipped.

    Raises:
        ValidationError: no series name, or one that is not a non-empty string.
        MissingDependencyError: pandas is not installed.
    """
    pd = require("pandas", "pandas", "Results.metric_series()")
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted or not all(isinstance(n, str) and n for n in wanted):
        raise ValidationError(f"metric_series needs series names, got {names!r}")
    run_ids: list[str] = []
    exp_ids: list[str] = []
    series_names: list[str] = []
    steps: list[Any] = []
    values: list[Any] = []
    params: list[dict[str, Any]] = []
    ctx = results._ctx
    for doc in results._docs:
        got = _series_of(ctx, doc, wanted)
        for name, (s, v) in got.items():
            n = min(len(s), len(v))
            run_ids += [doc["run_id"]] * n
            exp_ids += [doc["experiment_id"]] * n
            series_names += [name] * n
            steps += s[:n]
            values += decode_list(v[:n])  # ("Infinity", "NaN" ... are the floats)
            params += [doc.get("params") or {}] * n
    frame: dict[str, Any] = {
        "run_id": pd.Series(run_ids, dtype=object),
        "experiment_id": pd.Series(exp_ids, dtype=object),
    }
    for key in _keys(params):
        frame[f"params.{key}"] = pd.Series([p.get(key) for p in params])
    return pd.DataFrame({
        **frame,
        "name": pd.Series(series_names, dtype=object),
        "step": pd.Series(steps, dtype="int64") if steps else pd.Series([], dtype="int64"),
        "value": pd.Series(values, dtype="float64"),
    })


def aggregate(
    results: ResultsView,
    by: str | Sequence[str] = "params",
    metrics: Sequence[str] | None = None,
    stats: Sequence[str] = ("mean", "std", "count"),
    column_style: str | None = None,
) -> Any:
    """Group runs (seed replicates) and summarise metrics per group (pandas DataFrame).

    ``by``: ``"params"`` (every parameter: the runs of one parameter case,
    i.e. its seed replicates, form a group) or a list of parameter names /
    ``params.x`` fields.  ``metrics``: metric names (default: all).
    ``stats``: from :data:`STATS`.  One row per group, columns
    ``params.<name>`` for the keys (``param_<name>`` with ``column_style="original"``,
    see :mod:`metalab.analysis._frames`), ``n_runs``, and ``<metric>_<stat>``.
    Parameter values that are lists or objects group by their JSON text.

    Raises:
        ValidationError: an unknown statistic, parameter or metric.
    """
    pd = require("pandas", "pandas", "Results.aggregate()")
    n = naming(column_style)
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ValidationError(f"unknown statistic(s) {bad}; use some of {', '.join(STATS)}")
    params_of, metrics_of = results._maps("params"), results._maps("metrics")
    any_runs = bool(params_of)
    indexed = results._cols is not None
    all_params = _keys(params_of, indexed)
    all_metrics = _keys(metrics_of, indexed)
    if isinstance(by, str) and by in ("params", "param"):
        keys = all_params
    else:
        names = [by] if isinstance(by, str) else list(by)
        keys = [n.split(".", 1)[1] if n.startswith(("params.", "param.")) else n for n in names]
        unknown = [k for k in keys if k not in all_params]
        if unknown and any_runs:
            raise ValidationError(
                f"unknown parameter(s) {unknown} in aggregate(by=...); known: {all_params}"
            )
    chosen = list(metrics) if metrics is not None else all_metrics
    chosen = [m.split(".", 1)[1] if m.startswith(("metrics.", "metric.")) else m for m in chosen]
    unknown = [m for m in chosen if m not in all_metrics]
    if unknown and any_runs:
        raise ValidationError(f"unknown metric(s) {unknown} in aggregate(); known: {all_metrics}")

    def hashable(v: Any) -> Any:
        return dumps(v).decode() if isinstance(v, list | dict) else v

    frame: dict[str, Any] = {}
    for k in keys:
        frame[n.param(k)] = pd.Series(
            [hashable(p.get(k)) for p in params_of], dtype=object
        )
    for m in chosen:
        frame[f"__m_{m}"] = pd.to_numeric(
            pd.Series([m_.get(m) for m_ in metrics_of], dtype=object),
            errors="coerce",
        )
    df = pd.DataFrame(frame)
    key_cols = [n.param(k) for k in keys]
    if not key_cols:
        df["__all"] = 0
        key_cols = ["__all"]
    grouped = df.groupby(key_cols, dropna=False, sort=True)
    out = grouped.size().rename("n_runs").to_frame()
    for m in chosen:
        col = grouped[f"__m_{m}"]
        for s in stats:
            out[f"{m}_{s}"] = col.agg(s)
    out = out.reset_index()
    return out.drop(columns=["__all"]) if "__all" in out.columns else out


def ordered_keys(maps: Iterable[dict[str, Any]]) -> list[str]:
    """Keys of all maps: those of the first non-empty map first, in its order, then the rest sorted."""
    maps = maps if isinstance(maps, list) else list(maps)
    keys: set[str] = set().union(*maps)
    if not keys:
        return []
    first = next(m for m in maps if m)
    ordered = [k for k in first if k in keys]
    rest = keys.difference(first)
    return ordered + sorted(rest, key=str)
