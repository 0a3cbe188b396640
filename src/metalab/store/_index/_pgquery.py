"""The PostgresStore's index (:class:`PostgresQueries`): filter, projection,
ordering and limit run in SQL.

Used when the index is reachable and current for the experiment (nothing
pending in the catch-up journal); otherwise the store answers from the
files (the default scan of :meth:`Store.query_runs`), with the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from metalab._errors import IndexUnavailableError, StoreError
from metalab._internal._gc import gc_paused
from metalab._internal._json import loads
from metalab.query._ast import DYNAMIC, Field, Query, TrueNode, fields_of
from metalab.query._fields import FieldKey, named_fields, require_fields
from metalab.query._liveness import lost_cutoff
from metalab.query._parser import build_query
from metalab.store._index._interface import Index
from metalab.store._index._pgsql import PgCompiler

if TYPE_CHECKING:
    from metalab.store._base import Progress, Store
    from metalab.store._index._postgres import PostgresIndex


class PostgresStore(Protocol):
    """What the PostgreSQL queries read of the PostgresStore they serve (named by this
    interface, not imported, since the store module imports this one)."""

    @property
    def _index(self) -> PostgresIndex: ...

    @property
    def _files(self) -> Store: ...

    @property
    def experiment_id(self) -> str | None: ...

    def _index_current(self, experiment_id: str | None) -> bool: ...

    def _warn(self, what: str, exc: Exception) -> None: ...

    def _files_of(self, experiment_id: str) -> Store: ...

    @property
    def is_scoped(self) -> bool: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def catch_up(self) -> int: ...

    def _scope_experiments(self) -> list[str]: ...

    def _sync(self, experiments: list[str], progress: Progress | None,
              drop_others: bool) -> int: ...

__all__ = ["PostgresQueries", "query_index", "table_index"]

log = logging.getLogger("metalab.store.postgres")


def _check_named_fields(index: PostgresIndex, experiment_id: str | None,
                        query: Query) -> None:
    """Raise UnknownFieldError for a params/metrics/derived name no run has.

    Whether each named field is present is asked of the runs themselves (one
    statement, stopping at the first run that has it), not of the field
    catalog: every write marks that catalog stale, and recomputing it reads
    every run of the experiment (18 s at 10^6 runs), while holding its row
    against writers.  Only when a name is missing are the other known names
    read, from the catalog as last computed, for the error message.
    """
    def known(present: set[FieldKey]) -> set[FieldKey]:
        missing = set(named_fields(query)) - present
        experiments = ([experiment_id] if experiment_id is not None
                       else index.indexed_experiments())
        names = set(present)
        for eid in experiments:
            for row in index.field_catalog(eid, fresh=False):
                if row["type"] != "null" and row["count"] > 0:
                    names.add((row["namespace"], row["name"]))
        return names - missing  # (a kept catalog may still list a name whose runs are gone)

    require_fields(query, lambda keys: index.fields_present(experiment_id, keys), known,
                   lambda: index.has_runs(experiment_id))


def _compiler(index: PostgresIndex, query: Query, cutoff: int) -> PgCompiler:
    """The compiler of ``query``, told which params/metrics fields of its filter
    have an expression index (the plain numeric test is sent only for those)."""
    keys = sorted({(f.ns, f.name) for f in fields_of(query.where)
                   if f.ns in ("params", "metrics") and f.name})
    return PgCompiler(cutoff, frozenset(index.indexed_fields(keys)))


def query_index(index: PostgresIndex, experiment_id: str | None, query: Query,
                cutoff: int) -> list[dict[str, Any]]:
    """Run ``query`` on the index tables (raises IndexUnavailableError / StoreError).

    A projected query comes back as one row of JSON array texts, one per
    column (``PgCompiler.select(columnar=True)``), decoded by one ``loads``
    each (measured on a 9,898-run answer: 0.333 s, against 0.35 s fetching and
    decoding row by row).
    """
    from psycopg import sql

    _check_named_fields(index, experiment_id, query)
    text, args, plan = _compiler(index, query, cutoff).select(query, experiment_id,
                                                  columnar=query.columns is not None)
    stmt = sql.SQL(text).format(s=sql.Identifier(index.schema))
    with index.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL work_mem = '64MB'")  # sort the matches in memory
        rows = conn.execute(stmt, args).fetchall()
    if query.columns is None:
        return [loads(r[0]) for r in rows]
    with gc_paused():
        columns = [loads(t) for t in rows[0][1:]] if rows and rows[0][0] else []
        return [_projected(row, plan) for row in zip(*columns, strict=True)]


def _projected(row: tuple[Any, ...], plan: list[tuple[str, str, str, int]]) -> dict[str, Any]:
    """One run's document from its row of projected values (see ``PgCompiler.select``)."""
    doc: dict[str, Any] = {
        "run_id": row[0], "experiment_id": row[1], "status": row[2],
        "started_at": row[3],  # (ISO texts made by the server)
    }
    for kind, ns, name, i in plan:
        value = row[i]
        if kind == "map":
            bucket = doc.setdefault(ns, {})
            if value:
                bucket.update({n: v for n, v in value.items() if v is not None})
        elif kind == "value":
            bucket = doc.setdefault(ns, {})
            if value and (v := value.get(name)) is not None:
                bucket[name] = v
        elif kind == "time":
            doc[ns] = value
        elif kind == "tags":
            doc[ns] = list(value or [])
        elif kind == "number" and isinstance(value, str):
            doc[ns] = float(value)  # JSON has no NaN / infinity: the server quotes them
        else:
            doc[ns] = value
    return doc


def _scope(store: PostgresStore, experiment_id: str | None) -> tuple[bool, str | None]:
    """(whether ``experiment_id`` is within the store's scope, the experiment to read)."""
    if store.experiment_id is None:
        return True, experiment_id
    return experiment_id is None or experiment_id == store.experiment_id, store.experiment_id


class PostgresQueries(Index):
    """:class:`Index` of a PostgresStore: its PostgreSQL tables (``store._index``,
    a :class:`~._postgres.PostgresIndex`), read only when the journal says they are
    current for the experiment (else None: the store reads the files).

    A failing index is warned about (``store._warn``) and answers None.
    Catch-up and rebuild are the store's (they read its files and journal).
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def select(self, query: Query, experiment_id: str | None) -> list[dict[str, Any]] | None:
        store = self._store
        in_scope, scope = _scope(store, experiment_id)
        if not in_scope:
            return []
        if store._index_current(scope):
            try:
                return _runs_only(store, scope, query)
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                store._warn("query", exc)
        return None

    def count(self, experiment_id: str | None, status: str | None) -> int | None:
        store = self._store
        in_scope, scope = _scope(store, experiment_id)
        if not in_scope:
            return 0
        if store._index_current(scope):
            try:
                return store._index.count_runs(scope, status)
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                store._warn("count", exc)
        return None

    def status_counts(self, experiment_id: str | None) -> dict[str, int] | None:
        """One ``GROUP BY`` of the index when current (see :mod:`._pgcounts`), else None."""
        from metalab.store._index._pgcounts import status_counts

        store = self._store
        in_scope, scope = _scope(store, experiment_id)
        if not in_scope:
            return {}
        if store._index_current(scope):
            try:
                return status_counts(store._index, scope, lost_cutoff())
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                store._warn("count", exc)
        return None

    def status_overview(self, experiment_id: str | None,
                        planned: Collection[str] | None) -> dict[str, Any] | None:
        """One ``GROUP BY`` of the index when current (see :mod:`._pgcounts`), else None."""
        from metalab.store._index._pgcounts import status_overview

        store = self._store
        in_scope, scope = _scope(store, experiment_id)
        if not in_scope:
            return {"counts": {}, "last_started_at": None, "last_finished_at": None,
                    "planned_recorded": None if planned is None else 0}
        if store._index_current(scope):
            try:
                return status_overview(store._index, scope, lost_cutoff(), planned)
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                store._warn("count", exc)
        return None

    def table(self, experiment_id: str | None, query: Query | None) -> dict[str, Any] | None:
        return table_runs(self._store, experiment_id, query)

    def aggregate(self, experiment_id: str | None, query: Query, by: list[Field],
                  values: list[Field]) -> list[dict[str, Any]] | None:
        from metalab.store._index._aggregate import postgres_aggregate

        return postgres_aggregate(self._store, _scope(self._store, experiment_id), query, by,
                                  values, _check_named_fields)

    def histogram(self, experiment_id: str | None, query: Query, value: Field,
                  group: Field | None, edges: Any) -> list[dict[str, Any]] | None:
        from metalab.store._index._histogram import postgres_histogram

        return postgres_histogram(self._store, _scope(self._store, experiment_id), query,
                                  value, group, edges, _check_named_fields)

    def sample(self, experiment_id: str | None, query: Query, x: Field, y: Field,
               group: Field | None, limit: int) -> dict[str, Any] | None:
        from metalab.store._index._sample import postgres_sample

        return postgres_sample(self._store, _scope(self._store, experiment_id), query,
                               x, y, group, limit, _check_named_fields)

    def refresh(self, progress: Progress | None = None) -> int:
        """:meth:`PostgresStore.catch_up` (``progress`` is not reported)."""
        return self._store.catch_up()

    def rebuild(self, progress: Progress | None = None) -> int:
        """Re-sync every experiment of the store's scope from the files (binary COPY);
        an unscoped store also drops the experiments that no longer have files.

        Raises:
            IndexUnavailableError: the index cannot be reached.
        """
        store = self._store
        store.flush()
        store._index.breaker.reset()  # an explicit request: try now
        store._index.ping()
        store._index.created_schema = False
        return store._sync(store._scope_experiments(), progress, drop_others=not store.is_scoped)


def _runs_only(store: PostgresStore, scope: str | None, query: Query) -> list[dict[str, Any]]:
    """The index's answer without the rows of records that are not runs (an unknown
    status, ...; see :func:`~metalab.query.record_problem`), each
    reported with its file as the file scan does; with a ``limit``, asked again
    for more rows until the answer is as long as the scan's."""
    import contextlib
    import dataclasses
    import os

    from metalab._errors import CorruptRecordError, MetalabError
    from metalab.query._records import record_problem, report_problem

    cutoff = lost_cutoff()
    asked = query
    while True:
        found = query_index(store._index, scope, asked, cutoff)
        kept = [d for d in found if record_problem(d) is None]
        if (query.limit is None or len(kept) >= query.limit or asked.limit is None
                or len(found) < asked.limit):
            break
        asked = dataclasses.replace(asked, limit=asked.limit + len(found) - len(kept))
    for doc in found:
        why = record_problem(doc)
        if why is None:
            continue
        rid, eid = doc.get("run_id"), doc.get("experiment_id")
        path: str | None = None
        if isinstance(rid, str) and rid and isinstance(eid, str) and eid:
            with contextlib.suppress(ValueError, MetalabError):  # ids no file could have
                folder = store._files_of(eid).get_working_directory()
                path = os.path.join(folder, "runs", f"{rid}.json")
        named = path or f"(run_id {rid!r}, experiment_id {eid!r}) in the index"
        report_problem(CorruptRecordError(f"run record {named} {why}; it was skipped", path))
    return kept[: query.limit] if query.limit is not None else kept


def _table_fields(query: Query, experiment_id: str | None
                  ) -> tuple[list[str], list[tuple[str, str]]]:
    """The top-level columns and the (namespace, name) fields a load of ``query`` sends.

    A namespace asked for whole is one field ``(namespace, "")``: every run's
    object is sent, measured cheaper on the server than one value per field.
    """
    fixed = ["run_id", "status", "started_at"]
    if experiment_id is None:
        fixed.append("experiment_id")
    whole = {"params", "metrics"} if query.columns is None else {
        f.ns for f in query.columns if f.ns in DYNAMIC and not f.name}
    fields: list[tuple[str, str]] = [(ns, "") for ns in DYNAMIC if ns in whole]
    if query.columns is None:
        fixed += ["finished_at", "duration_ms", "context_fingerprint"]
    else:
        for f in query.columns:
            if f.ns in DYNAMIC:
                if f.ns not in whole and (f.ns, f.name) not in fields:
                    fields.append((f.ns, f.name))
            elif f.ns not in fixed:
                fixed.append(f.ns)
    return fixed, fields


def _field_columns(fields: list[tuple[str, str]], values: list[Any], projected: bool
                   ) -> tuple[dict[tuple[str, str], list[Any]], dict[str, list[dict[str, Any]]]]:
    """The column of each field, a namespace sent whole split into one column per
    key; and the whole objects of the namespaces the columns cannot stand for."""
    columns: dict[tuple[str, str], list[Any]] = {}
    objects: dict[str, list[dict[str, Any]]] = {}
    for (ns, name), column in zip(fields, values, strict=True):
        if name:
            columns[(ns, name)] = column
            continue
        maps = column if None not in column else [m if m is not None else {} for m in column]
        keys = sorted(set().union(*maps))
        # typical sweep: one key set (the distinct object sizes, counted in C)
        same = all(size == len(keys) for size in set(map(len, maps)))
        for key in keys:
            columns[(ns, key)] = (list(map(itemgetter(key), maps)) if same
                                  else [m.get(key) for m in maps])
        # the whole objects are kept only where the columns cannot stand for
        # them: a projected namespace, or a value that is JSON null (a column
        # holds None both for it and for a missing key)
        if projected or (not same and any(None in m.values() for m in maps)) or (
                same and any(None in columns[(ns, key)] for key in keys)):
            objects[ns] = maps
    return columns, objects


def table_index(index: PostgresIndex, experiment_id: str | None, query: Query,
                cutoff: int) -> dict[str, Any]:
    """The runs answering ``query`` as columns (see :func:`table_runs`)."""
    _check_named_fields(index, experiment_id, query)
    fixed, fields = _table_fields(query, experiment_id)
    # two statements (top-level fields; params/metrics/derived) that the
    # index runs at the same time on one snapshot (measured at 100k runs: about
    # the same server time each; the top-level fields with the metrics against
    # the params alone was slower)
    compiler = _compiler(index, query, cutoff)
    statements = [compiler.table(query, experiment_id, fixed, [])]
    if fields:
        statements.append(compiler.table(query, experiment_id, [], fields))

    def decode(row: tuple[Any, ...]) -> tuple[Any, ...]:
        # (the values, then whether the texts of non-finite numbers may be among them)
        with gc_paused():
            return (row[0], *(loads(t) for t in row[1:]),
                    any(map(_may_hold_number_texts, row[1:])))

    # the default full load of one experiment: the server may hand back the
    # answer it kept (``run_table_cache``) while nothing changed
    default = (experiment_id is not None and query.columns is None and not query.order
               and query.limit is None and isinstance(query.where, TrueNode))
    generation: int | None = None
    quiet = False
    if default and experiment_id is not None:
        layout = table_layout(statements)
        body, generation, quiet = index.table_cache.lookup(experiment_id, cutoff, layout)
        kept = _from_cache(body, experiment_id) if body is not None else None
        if kept is not None:
            index.last_table_source = "cache"
            return kept
    index.last_table_source = "query"
    answers = index.run_tables(statements, decode)
    counts = {int(a[0]) if a else 0 for a in answers}
    if len(counts) != 1:  # pragma: no cover - same snapshot and filter: cannot differ
        raise StoreError("the index answered a load with differing row counts; retry")
    n = counts.pop()
    with gc_paused():
        values = [v for a in answers for v in a[1:-1]]
        number_texts = bool(fields) and bool(answers[-1] and answers[-1][-1])
        if not n:
            values = [[] for _ in fixed + fields]
        columns, objects = _field_columns(fields, values[len(fixed):], query.columns is not None)
    answer = {
        "n": n,
        "experiment_id": experiment_id,
        "projected": query.columns is not None,
        "fixed": dict(zip(fixed, values[: len(fixed)], strict=True)),
        "fields": columns,
        "objects": objects,
        "number_texts": number_texts,
    }
    if default and experiment_id is not None and generation is not None and quiet:
        kept_bytes = _to_cache(answer)
        if kept_bytes is not None:
            index.table_cache.store(experiment_id, generation, cutoff, layout, kept_bytes)
    return answer


def _may_hold_number_texts(text: Any) -> bool:
    """Might a JSON text hold ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (how the
    index stores non-finite metrics, see metalab._internal._json)?  A substring
    search of the text, much cheaper than looking at every decoded value."""
    if isinstance(text, str):
        return 'Infinity"' in text or '"NaN"' in text
    if isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text) if isinstance(text, memoryview) else text
        return b'Infinity"' in data or b'"NaN"' in data
    return True


def table_layout(statements: list[tuple[str, list[Any]]]) -> bytes:
    """What a kept load answer depends on besides the data: the statement texts
    and their arguments (the lost cutoff aside), so a metalab that loads other
    columns never reads another version's answer."""
    import hashlib
    from datetime import datetime

    digest = hashlib.sha256()
    for text, args in statements:
        digest.update(text.encode())
        for arg in args:
            if not isinstance(arg, datetime):
                digest.update(b"\x00" + repr(arg).encode())
        digest.update(b"\x01")
    return digest.digest()[:16]


def _to_cache(answer: dict[str, Any]) -> bytes | None:
    """The bytes kept for a default load's answer (decoded columns, as JSON); None
    when a value cannot be written back exactly (an integer beyond 64 bits)."""
    import orjson

    try:
        return orjson.dumps({
            "n": answer["n"], "fixed": answer["fixed"],
            "fields": [[ns, name, col] for (ns, name), col in answer["fields"].items()],
            "objects": answer["objects"],
        })
    except (TypeError, orjson.JSONEncodeError):
        return None


def _from_cache(body: Any, experiment_id: str) -> dict[str, Any] | None:
    """The answer of :func:`_to_cache`'s bytes; None when they are not such an answer."""
    try:
        with gc_paused():
            got = loads(body)
        return {
            "n": int(got["n"]), "experiment_id": experiment_id, "projected": False,
            "fixed": dict(got["fixed"]),
            "fields": {(ns, name): col for ns, name, col in got["fields"]},
            "objects": dict(got["objects"]),
            "number_texts": _may_hold_number_texts(body),
        }
    except (ValueError, TypeError, KeyError):
        return None


def table_runs(store: PostgresStore, experiment_id: str | None,
               query: Query | None) -> dict[str, Any] | None:
    """The runs of ``query`` as columns from the index; None when it cannot answer.

    One round trip for the rows (plus the field catalog): ``{"n": runs,
    "experiment_id": the scope or None, "projected": columns were given,
    "fixed": {"run_id": [...], "status": [...], ...}, "fields": {(namespace,
    name): [...]}, "objects": {namespace: [each run's whole object]}}`` (whole
    objects for the namespaces asked for whole in ``columns``, and for those
    holding a JSON null, which a column cannot tell from a missing name; else
    the columns stand for them), "number_texts": False when no value of a
    params/metrics/derived field is a text of a non-finite number}.  Values are JSON
    values as the index holds them (``None`` where a run lacks the field; a
    non-finite metric is its text, ``"Infinity"`` ...); times are ISO 8601 texts in UTC.
    None means: the index is unreachable or behind the files; read the files.
    """
    query = query if query is not None else build_query(None)
    in_scope, scope = _scope(store, experiment_id)
    if not in_scope:
        return {"n": 0, "experiment_id": experiment_id, "projected": query.columns is not None,
                "fixed": {}, "fields": {}}
    if not store._index_current(scope):
        return None
    try:
        return table_index(store._index, scope, query, lost_cutoff())
    except (IndexUnavailableError, StoreError, ImportError) as exc:
        store._warn("load", exc)
    return None
