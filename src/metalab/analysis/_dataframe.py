"""The DataFrame of :meth:`Results.to_dataframe <metalab.analysis.Results.to_dataframe>`.

Built column-wise, either from the run documents a :class:`Results` holds
(one pass over them) or straight from its column table (no per-run
documents).  Column names follow :mod:`metalab.analysis._frames`.
Thread safety: as the :class:`Results` read (immutable).
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from metalab.analysis._tables import RECORD_COLUMNS, ResultsView, ordered_keys

if TYPE_CHECKING:
    import pandas as pd

    from metalab.analysis._frames import Naming

__all__ = ["frame"]

_EMPTY: dict[str, Any] = {}


def frame(results: ResultsView, pd: Any, n: Naming, include_params: bool, include_metrics: bool,
          include_derived: bool, include_record: bool) -> pd.DataFrame:
    """The DataFrame of ``Results.to_dataframe`` (pandas given as ``pd``)."""
    if results._cols is not None:
        return _table_frame(results, pd, n, include_params, include_metrics, include_derived,
                            include_record)
    docs = results._docs
    # one pass over the documents (they are scattered in memory: each pass costs)
    run_ids: list[str] = []
    exp_ids: list[str] = []
    statuses: list[str] = []
    started: list[str | None] = []
    finished: list[str | None] = []
    durations: list[Any] = []
    contexts: list[str | None] = []
    param_maps: list[dict[str, Any]] = []
    metric_maps: list[dict[str, Any]] = []
    add_run, add_exp, add_status = run_ids.append, exp_ids.append, statuses.append
    add_start, add_finish, add_dur = started.append, finished.append, durations.append
    add_params, add_metrics = param_maps.append, metric_maps.append
    add_context = contexts.append
    for d in docs:
        get = d.get
        add_run(d["run_id"])
        add_exp(d["experiment_id"])
        add_status(d["status"])
        add_start(get("started_at"))
        add_finish(get("finished_at"))
        add_dur(get("duration_ms"))
        add_context(get("context_fingerprint") or None)
        add_params(get("params") or _EMPTY)
        add_metrics(get("metrics") or _EMPTY)
    cols: dict[str, Any] = {"run_id": pd.Series(run_ids, dtype=object)}
    if include_record:
        cols["experiment_id"] = pd.Series(exp_ids, dtype=object)
        cols["status"] = pd.Series(statuses, dtype=object)
        for name, values in (("started_at", started), ("finished_at", finished)):
            cols[name] = pd.to_datetime(
                pd.Series(values, dtype=object), utc=True, format="ISO8601", errors="coerce"
            )
        try:
            cols["duration_ms"] = pd.Series(durations, dtype="float64")
        except (TypeError, ValueError):  # a hand-edited record: keep what is numeric
            cols["duration_ms"] = pd.to_numeric(
                pd.Series(durations, dtype=object), errors="coerce"
            )
        cols["context_fingerprint"] = pd.Series(contexts, dtype=object)
    if include_params:
        _add_columns(cols, param_maps, n.params)
    if include_metrics:
        _add_columns(cols, metric_maps, "", clash=n.metric_clash)
    if include_derived:
        derived = results._derived_list(set(exp_ids))
        if derived:
            _add_columns(cols, derived, n.derived)
    return pd.DataFrame(cols, index=pd.RangeIndex(len(docs)))

def _table_frame(results: ResultsView, pd: Any, n: Naming, include_params: bool,
                 include_metrics: bool, include_derived: bool, include_record: bool
                 ) -> pd.DataFrame:
    """:meth:`to_dataframe` straight from the columns (no per-run documents)."""
    table = results._cols
    assert table is not None
    cols: dict[str, Any] = {"run_id": pd.Series(table.column("run_id"), dtype=object)}
    exp_ids = table.column("experiment_id")
    if include_record:
        cols["experiment_id"] = pd.Series(exp_ids, dtype=object)
        cols["status"] = pd.Series(table.column("status"), dtype=object)
        for name in ("started_at", "finished_at"):
            cols[name] = pd.to_datetime(
                pd.Series(table.column(name), dtype=object), utc=True, format="ISO8601",
                errors="coerce",
            )
        cols["duration_ms"] = pd.Series(table.column("duration_ms"), dtype="float64")
        cols["context_fingerprint"] = pd.Series(
            [v or None for v in table.column("context_fingerprint")], dtype=object)
    if include_params:
        for key in table.names("params"):
            cols[n.param(key)] = table.fields[("params", key)]
    if include_metrics:
        for key in table.names("metrics"):
            clash = key in cols or key in RECORD_COLUMNS
            cols[f"{n.metric_clash}{key}" if clash else key] = table.fields[("metrics", key)]
    if include_derived:
        derived = results._derived_list(set(exp_ids))
        if derived:
            _add_columns(cols, derived, n.derived)
    return pd.DataFrame(cols, index=pd.RangeIndex(len(table)))


def _add_columns(
    cols: dict[str, Any], maps: list[dict[str, Any]], prefix: str, clash: str | None = None
) -> None:
    if not maps:
        return
    first = maps[0]
    extracted: list[tuple[str, list[Any]]] | None = None
    n_keys = len(first)
    if n_keys and all(n == n_keys for n in map(len, maps)):
        # typical sweep: every map has the first map's keys (same count => no others)
        try:
            extracted = [(key, list(map(itemgetter(key), maps))) for key in first]
        except KeyError:
            extracted = None
    if extracted is None:
        extracted = [(key, [m.get(key) for m in maps]) for key in ordered_keys(maps)]
    for key, values in extracted:
        column = f"{prefix}{key}"
        if clash is not None and (column in cols or column in RECORD_COLUMNS):
            column = f"{clash}{key}"
        cols[column] = values
