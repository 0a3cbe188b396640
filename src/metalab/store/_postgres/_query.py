"""PostgresStore queries: filter, projection, ordering and limit run in SQL.

Used when the index is reachable and current for the experiment (nothing
pending in the catch-up journal); otherwise the query is answered from the
files (the default scan of :meth:`Store.query_runs`), with the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import IndexUnavailableError, StoreError
from metalab._internal._json import loads
from metalab._internal._time import to_iso
from metalab.store._query._ast import DYNAMIC, Query, check_fields
from metalab.store._query._eval import lost_cutoff
from metalab.store._query._parser import build_query
from metalab.store._query._pgsql import PgCompiler

if TYPE_CHECKING:
    from metalab.store._postgres._index import PostgresIndex
    from metalab.store._postgres._store import PostgresStore

__all__ = ["query_index", "query_runs"]

log = logging.getLogger("metalab.store.postgres")


def _known_fields(index: PostgresIndex, experiment_id: str | None) -> tuple[set[str], bool]:
    experiments = [experiment_id] if experiment_id is not None else index.indexed_experiments()
    names: set[str] = set()
    for eid in experiments:
        for row in index.field_catalog(eid):
            if row["type"] != "null" and row["count"] > 0:
                names.add(f"{row['namespace']}.{row['name']}")
    return names, index.has_runs(experiment_id)


def query_index(index: PostgresIndex, experiment_id: str | None, query: Query,
                cutoff: int) -> list[dict[str, Any]]:
    """Run ``query`` on the index tables (raises IndexUnavailableError / StoreError)."""
    from psycopg import sql
    from psycopg.types.json import set_json_loads

    if any(f.ns in DYNAMIC and f.name for f in query.fields()):
        names, any_runs = _known_fields(index, experiment_id)
        check_fields(query, lambda: names, any_runs=any_runs)
    text, args, plan = PgCompiler(cutoff).select(query, experiment_id)
    stmt = sql.SQL(text).format(s=sql.Identifier(index.schema))
    with index.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL work_mem = '64MB'")  # sort the matches in memory
        cur = conn.cursor()
        set_json_loads(loads, cur)  # the loader the files are read with
        rows = cur.execute(stmt, args).fetchall()
    if query.columns is None:
        return [loads(r[0]) for r in rows]
    out = []
    for row in rows:
        doc: dict[str, Any] = {
            "run_id": row[0], "experiment_id": row[1], "status": row[2],
            "started_at": to_iso(row[3]),
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
                doc[ns] = to_iso(value)
            elif kind == "tags":
                doc[ns] = list(value or [])
            else:
                doc[ns] = value
        out.append(doc)
    return out


def query_runs(
    store: PostgresStore,
    experiment_id: str | None,
    where: Any,
    columns: Sequence[str] | None,
    order_by: Sequence[str] | str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """:meth:`Store.query_runs` for a PostgresStore (SQL pushdown, files as fallback)."""
    query = where if isinstance(where, Query) else build_query(
        where, columns=columns, order_by=order_by, limit=limit
    )
    scope = experiment_id
    if store.experiment_id is not None:
        if experiment_id is not None and experiment_id != store.experiment_id:
            return []
        scope = store.experiment_id
    if store._index_current(scope):
        try:
            return query_index(store._index, scope, query, lost_cutoff())
        except (IndexUnavailableError, StoreError, ImportError) as exc:
            store._warn("query", exc)
    return store._files.query_runs(scope, query)
