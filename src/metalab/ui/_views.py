"""What the UI shows, read from one store: experiments, run pages, runs, comparisons.

Every function here reads through the :class:`~metalab.store.Store` interface
and the query language (:mod:`metalab.query`), so it works the same on a
FileStore (its SQLite catalog) and a PostgresStore (SQL), on a collection
and on one experiment; nothing here writes to the store.  The answers are
plain JSON-able dicts: the API sends them as they are and the pages render
them.  Thread-safe (a :class:`StoreView` may serve many requests at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from metalab._errors import NotFoundError, ValidationError
from metalab.model import RunRecord, Status
from metalab.store import Store, make_store
from metalab.ui._keyset import after_filter, decode_cursor, encode_cursor

__all__ = [
    "COMPARE_MAX",
    "COMPARE_MIN",
    "PAGE_SIZE_MAX",
    "StoreView",
    "flatten",
    "grouped",
    "int_param",
    "parse_list",
    "status_class",
    "view_state",
]

#: the most rows one page of the runs view holds
PAGE_SIZE_MAX = 500
#: default rows per page
PAGE_SIZE = 50
#: how many runs the compare view takes
COMPARE_MIN, COMPARE_MAX = 2, 20
#: how many runs are read to list the fields of an experiment (the first by run id:
#: run ids are hashes, so a spread over the experiment, read without sorting it)
FIELD_SAMPLE = 500
#: seconds the field names of an experiment are reused before they are read again
FIELDS_TTL_S = 5.0
#: seconds an experiment's status counts are reused (the pages poll every second, so
#: the counts they show are at most 2 s old while counting takes under 0.3 s) ...
SUMMARY_TTL_S = 0.5
#: ... or this many times as long as counting took, if longer: a server never spends
#: more than about a third of its time counting, however large the experiment
SUMMARY_REUSE_FACTOR = 2.0
#: default columns when the view names none: the first params and metrics
DEFAULT_PARAMS, DEFAULT_METRICS = 8, 8
#: statuses shown as counts, in this order (``not_started``: in the manifest, no record yet)
STATUS_ORDER = ("running", "lost", "failed", "cancelled", "success")


def parse_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (a comma-separated query-string value)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """A run document (or projected row) as one flat row: ``params.lr`` etc."""
    row: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("params", "metrics", "derived") and isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            row[key] = value
    return row


#: the bands the replicate view offers
BANDS = ("std", "sem", "ci95")


def int_param(params: Mapping[str, str], name: str, default: int,
              upper: int | None = None) -> int:
    """Query-string parameter ``name`` as an int (ValidationError if it is not one,
    or if it is above ``upper``)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number, got {raw!r}") from None
    if upper is not None and value > upper:
        raise ValidationError(f"{name} must be at most {upper}, got {value}")
    return value


def view_state(params: Mapping[str, str]) -> dict[str, Any]:
    """The runs view's state from a query string: where, columns, sort, group, band, limit."""
    band = params.get("band") or "ci95"
    if band not in BANDS:
        raise ValidationError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    return {
        "limit": int_param(params, "limit", PAGE_SIZE),
        "where": params.get("where") or "",
        "columns": parse_list(params.get("columns")),
        "sort": parse_list(params.get("sort")),
        "group": params.get("group") in ("1", "true", "on", "yes"),
        "band": band,
    }


def grouped(view: StoreView, experiment_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """The replicate table of the view: one row per parameter case (n, mean, band)."""
    from metalab.analysis import replicate_table

    columns = state["columns"] or view.default_columns(experiment_id)
    values = [c for c in columns if not c.startswith("params.")]
    results = view.results(experiment_id, where=state["where"], columns=["params", *values])
    return replicate_table(results, values, state["band"])


def _sort_fields(sort: Sequence[str]) -> list[tuple[str, bool]]:
    out = []
    for item in sort:
        desc = item.startswith("-")
        out.append((item.lstrip("-").strip(), desc))
    return out


class StoreView:
    """The read-only views of one store (scoped to an experiment or a collection).

    ``store`` stays open for the life of the view; scoped stores of its
    experiments are opened on first use and kept.  Raises what the store
    raises (:class:`~metalab.NotFoundError` for an unknown experiment or run,
    :class:`~metalab.QueryError` for a bad query).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._scoped: dict[str, Store] = {}
        self._fields: dict[str, tuple[float, dict[str, list[str]]]] = {}
        self._summaries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._planned: dict[str, tuple[list[Any], frozenset[str]]] = {}
        self._summary_lock = threading.Lock()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the scoped stores this view opened (not the store it was given)."""
        with self._lock:
            opened, self._scoped = list(self._scoped.values()), {}
        for s in opened:
            if s is not self.store:
                s.close()

    # ------------------------------------------------------------ experiments
    def experiments(self) -> list[str]:
        return sorted(self.store.list_experiments())

    def scoped(self, experiment_id: str) -> Store:
        """The store of ``experiment_id`` (NotFoundError when the store does not hold it).

        Opened on first use and kept; threads asking at once may each open one,
        and all but the one kept are closed again (so :meth:`close` closes every
        store this view opened)."""
        with self._lock:
            found = self._scoped.get(experiment_id)
        if found is not None:
            return found
        if self.store.experiment_id == experiment_id:
            scoped = self.store
        elif experiment_id in self.experiments() and not self.store.is_scoped:
            scoped = make_store(self.store, experiment_id=experiment_id)
            if experiment_id not in scoped.list_experiments():
                # the store is the experiment's folder itself: it reads its own runs
                # (as load_results does)
                scoped.close()
                scoped = self.store
        else:
            raise NotFoundError(f"this store holds no experiment {experiment_id!r}")
        with self._lock:
            kept = self._scoped.setdefault(experiment_id, scoped)
        if kept is not scoped and scoped is not self.store:
            scoped.close()  # (another thread opened it first: its store is the one kept)
        return kept

    def experiment_info(self, experiment_id: str) -> dict[str, Any]:
        """Id, name, description, tags, params and seeds of the experiment, from its
        newest manifest (cheap: no run is read)."""
        manifest = self.scoped(experiment_id).get_experiment_manifest(experiment_id) or {}
        return {
            "experiment_id": experiment_id,
            "name": manifest.get("name"),
            "description": manifest.get("description") or "",
            "tags": [str(t) for t in manifest.get("tags") or ()],
            "params": manifest.get("params"),
            "seeds": manifest.get("seeds"),
            "planned": manifest.get("run_ids"),
            "total_runs": manifest.get("total_runs"),
        }

    def experiment_summary(self, experiment_id: str) -> dict[str, Any]:
        """:meth:`experiment_info` plus status counts (with ``not_started``: runs of the
        manifest without a record yet), progress and last activity.

        Counts come from the store's index when it can answer (one ``GROUP BY``),
        else from reading every run; either way one summary is computed at a time
        and reused for :data:`SUMMARY_TTL_S` seconds, or :data:`SUMMARY_REUSE_FACTOR`
        times as long as it took, however many browsers poll the live counts.
        """
        with self._summary_lock:
            cached = self._summaries.get(experiment_id)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            started = time.monotonic()
            summary = self._count(experiment_id)
            done = time.monotonic()
            reuse = max(SUMMARY_TTL_S, SUMMARY_REUSE_FACTOR * (done - started))
            self._summaries[experiment_id] = (done + reuse, summary)
            return summary

    def _count(self, experiment_id: str) -> dict[str, Any]:
        """Counts by status, the runs of the manifest not started and the last activity,
        in one pass of the store's index when it can answer (one ``GROUP BY``, the
        planned ids looked up inside it), else one read of every run."""
        info = self.experiment_info(experiment_id)
        planned, total = info.pop("planned"), info.pop("total_runs")
        ids = self._planned_ids(experiment_id, planned) if isinstance(planned, list) else None
        found = self.scoped(experiment_id).status_overview(experiment_id, planned=ids)
        counts = dict.fromkeys(STATUS_ORDER, 0)
        counts.update(found["counts"])
        recorded = sum(found["counts"].values())
        if ids is not None:
            counts["not_started"] = max(0, len(ids) - int(found["planned_recorded"] or 0))
        elif isinstance(total, int):
            counts["not_started"] = max(0, total - recorded)
        else:
            counts["not_started"] = 0
        finished = counts["success"] + counts["failed"] + counts["cancelled"]
        total_runs = recorded + counts["not_started"]
        times = [t for t in (found["last_started_at"], found["last_finished_at"]) if t]
        return {**info, "counts": counts, "total": total_runs, "finished": finished,
                "progress": (finished / total_runs) if total_runs else None,
                "last_activity": max(times) if times else None}

    def _planned_ids(self, experiment_id: str, planned: list[Any]) -> frozenset[str]:
        """The manifest's planned run ids as a set, made again only when they change
        (comparing the lists costs 0.02 s at 10^6 ids, making the set 0.4 s)."""
        with self._lock:
            cached = self._planned.get(experiment_id)
        if cached is not None and cached[0] == planned:
            return cached[1]
        # (a planned id that is not a text is never a run's: kept, so it counts as not
        # started, under a name no run id can have)
        ids = frozenset(p if isinstance(p, str) else f"\0{p!r}" for p in planned)
        with self._lock:
            self._planned[experiment_id] = (planned, ids)
        return ids

    def all_summaries(self) -> list[dict[str, Any]]:
        return [self.experiment_summary(eid) for eid in self.experiments()]

    def all_infos(self) -> list[dict[str, Any]]:
        """:meth:`experiment_info` of every experiment (no run is read)."""
        return [self.experiment_info(eid) for eid in self.experiments()]

    def fields(self, experiment_id: str) -> dict[str, list[str]]:
        """Field names of the experiment by namespace (from a sample of its runs; kept
        for :data:`FIELDS_TTL_S` seconds, so one page load reads them once)."""
        now = time.monotonic()
        with self._lock:
            cached = self._fields.get(experiment_id)
        if cached is not None and now - cached[0] < FIELDS_TTL_S:
            return cached[1]
        found = self._read_fields(experiment_id)
        with self._lock:
            self._fields[experiment_id] = (now, found)
        return found

    def _read_fields(self, experiment_id: str) -> dict[str, list[str]]:
        from metalab.query import known_fields

        store = self.scoped(experiment_id)
        rows = store.query_runs(experiment_id, None, columns=["params", "metrics", "derived"],
                                limit=FIELD_SAMPLE)
        names = known_fields(rows, (r["derived"] for r in rows if isinstance(r.get("derived"), dict)))
        out: dict[str, list[str]] = {"params": [], "metrics": [], "derived": []}
        for name in sorted(names):
            ns = name.partition(".")[0]
            out.setdefault(ns, []).append(name)
        return out

    def default_columns(self, experiment_id: str) -> list[str]:
        fields = self.fields(experiment_id)
        return fields["params"][:DEFAULT_PARAMS] + fields["metrics"][:DEFAULT_METRICS]

    # ------------------------------------------------------------------- runs
    def runs_page(
        self,
        experiment_id: str,
        *,
        where: str = "",
        columns: Sequence[str] = (),
        sort: Sequence[str] = (),
        after: str | None = None,
        limit: int = PAGE_SIZE,
    ) -> dict[str, Any]:
        """One page of the experiment's runs matching ``where``, with only ``columns`` fetched.

        ``after``: the cursor of the previous page's last row (keyset
        pagination: see :mod:`metalab.ui._keyset`).  Returns ``columns``,
        ``rows`` (flat dicts) and ``next`` (the cursor of the next page, or
        None).  Raises QueryError for a bad filter, column or sort field,
        ValidationError for a bad cursor or limit.
        """
        from metalab.query import build_query

        if not 1 <= limit <= PAGE_SIZE_MAX:
            raise ValidationError(f"limit must be between 1 and {PAGE_SIZE_MAX}, got {limit}")
        store = self.scoped(experiment_id)
        cols = list(columns) or self.default_columns(experiment_id)
        order = _sort_fields(sort)
        if any(f == "tags" for f, _ in order):
            raise ValidationError("the runs cannot be sorted by tags (a list); sort by another field")
        build_query(where, columns=cols, order_by=list(sort))  # syntax errors point into `where`
        fetch = cols + [f for f, _ in order if f not in cols and f not in _IDENTITY]
        text = where
        if after:
            values, run_id = decode_cursor(after)
            cursor = after_filter(order, values, run_id)
            text = f"({where}) and ({cursor})" if where.strip() else cursor
        found = store.query_runs(experiment_id, text, columns=fetch, order_by=list(sort),
                                 limit=limit + 1)
        rows = [flatten(d) for d in found[:limit]]
        nxt = None
        if len(found) > limit:
            last = rows[-1]
            nxt = encode_cursor([last.get(f) for f, _ in order], str(last["run_id"]))
        return {"experiment_id": experiment_id, "columns": cols, "rows": rows, "next": nxt,
                "where": where, "sort": list(sort)}

    def query_rows(self, experiment_id: str, *, where: str, columns: Sequence[str],
                   sort: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """Every row of the query (no page): the columns shown and the flat rows (for downloads)."""
        store = self.scoped(experiment_id)
        cols = list(columns) or self.default_columns(experiment_id)
        found = store.query_runs(experiment_id, where, columns=cols, order_by=list(sort))
        header = ["run_id", "experiment_id", "status", "started_at", *cols]
        return header, [flatten(d) for d in found]

    def results(self, experiment_id: str, *, where: str, columns: Sequence[str],
                sort: Sequence[str] = ()) -> Any:
        """:func:`~metalab.load_results` of the query (a :class:`~metalab.Results`)."""
        from metalab.analysis import load_results

        return load_results(self.scoped(experiment_id), where=where or None,
                            columns=list(columns), order_by=list(sort) or None)

    # -------------------------------------------------------------------- run
    def record(self, run_id: str) -> tuple[Store, RunRecord]:
        """(the run's experiment store, its record); NotFoundError if no experiment has it."""
        record = self.store.get_run_record(run_id)
        if record is None and not self.store.is_scoped:
            for eid in self.experiments():
                record = self.scoped(eid).get_run_record(run_id)
                if record is not None:
                    break
        if record is None:
            raise NotFoundError(f"this store holds no run {run_id!r}")
        return self.scoped(record.experiment_id), record

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """Everything the run page shows except file contents (fetched on demand)."""
        from metalab.query import effective_status

        store, record = self.record(run_id)
        doc = record.to_dict()
        status = effective_status(doc, datetime.now(UTC))
        series = set(record.series)
        return {
            "run_id": record.run_id,
            "experiment_id": record.experiment_id,
            "status": str(status),
            "started_at": doc.get("started_at"),
            "finished_at": doc.get("finished_at"),
            "heartbeat_at": doc.get("heartbeat_at"),
            "duration_ms": record.duration_ms,
            "attempt": record.attempt,
            "params": doc.get("params") or {},
            "seed": doc.get("seed") or {},
            "metrics": doc.get("metrics") or {},
            "derived": store.get_derived(run_id) or {},
            "tags": list(record.tags),
            "provenance": doc.get("provenance") or {},
            "fingerprints": {k: doc.get(k) for k in (
                "context_fingerprint", "params_fingerprint", "seed_fingerprint")},
            "error": record.error.to_dict() if record.error else None,
            "warnings": list(record.warnings),
            "series": sorted(series),
            "data": sorted(n for n in store.list_data(run_id) if n not in series),
            "artifacts": [a.to_dict() for a in _artifacts(store, record)],
            "logs": sorted(store.list_logs(run_id)),
        }

    def series(self, run_id: str, names: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
        """The stepped series ``names`` of the run (NotFoundError for one it does not have)."""
        from metalab.analysis import Run

        store, _ = self.record(run_id)
        run = Run.from_store(store, run_id)
        return {name: run.metric_series(name) for name in names}

    def compare(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """2 to 20 runs side by side: params (``differ``: the names whose values differ),
        metrics, derived values and the series names they share or not."""
        if not COMPARE_MIN <= len(run_ids) <= COMPARE_MAX:
            raise ValidationError(
                f"compare takes {COMPARE_MIN} to {COMPARE_MAX} runs, got {len(run_ids)}; "
                "pick them on the runs page")
        if len(set(run_ids)) != len(run_ids):
            raise ValidationError("compare: a run is named twice")
        runs = [self.run_detail(rid) for rid in run_ids]
        out: dict[str, Any] = {"runs": [{k: r[k] for k in (
            "run_id", "experiment_id", "status", "tags", "error")} for r in runs]}
        for section in ("params", "metrics", "derived"):
            names = sorted({k for r in runs for k in r[section]})
            values = {n: [r[section].get(n) for r in runs] for n in names}
            out[section] = values
            out[f"{section}_differ"] = [n for n, vs in values.items()
                                        if any(v != vs[0] for v in vs[1:])]
        out["series"] = sorted({s for r in runs for s in r["series"]})
        return out


#: fields every projected row has (never fetched as a column)
_IDENTITY = frozenset({"run_id", "experiment_id", "status", "started_at"})


def _artifacts(store: Store, record: RunRecord) -> list[Any]:
    listed = list(record.artifacts)
    return listed or list(store.list_artifacts(record.run_id))


def status_class(status: str) -> str:
    """A CSS class for a status badge (``running``, ``lost``, ``failed`` stand out)."""
    return f"badge-{status}" if status in {s.value for s in Status} else "badge-other"
