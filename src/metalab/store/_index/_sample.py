"""A fixed sample of runs for a scatter of raw points, chosen by the index (sample pushdown).

:func:`catalog_sample` (the FileStore's SQLite catalog) and :func:`pg_sample`
(PostgreSQL) answer :meth:`Index.sample
<metalab.store._index._interface.Index.sample>` in two statements within one
lock (SQLite) or transaction (PostgreSQL):

1. the runs per value of the group field and per class of the x and y values
   (:data:`CLASSES`: what a chart leaves out, and why);
2. when more than ``limit`` runs have finite x and y: ``limit`` of them, the
   first in the order of a hash of each run (SQLite: the catalog's CRC-32 of
   the run's file name; PostgreSQL: ``hashtext`` of the run id), ties broken
   by the name.  The same query gives the same runs each time, spread over
   the whole experiment; only those runs leave the index.

What a value is follows :mod:`._aggregate` (booleans are not numbers; the
texts ``"Infinity"``, ``"-Infinity"``, ``"NaN"`` are those numbers).  Field
names reach SQL only as the catalog's generated column names (SQLite) or as
bound parameters (PostgreSQL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalab.query._ast import Field, Query
from metalab.store._index._aggregate import _check_fields, _key_value, _pg_value
from metalab.store._index._histogram import (
    catalog_read,
    catalog_scope,
    filestore_answer,
    pg_kinds,
    pg_reading,
    pg_scope,
    postgres_answer,
    sqlite_float,
    sqlite_kinds,
)
from metalab.store._index._sqlite import decode

if TYPE_CHECKING:
    from metalab.store._index._catalog import Catalog
    from metalab.store._index._postgres import PostgresIndex

__all__ = ["CLASSES", "catalog_sample", "filestore_sample", "pg_sample", "postgres_sample"]

#: the classes of a value (their positions are the codes the statements give)
CLASSES = ("missing", "other", "nan", "posinf", "neginf", "finite")


def _answer(classes: list[tuple[Any, Any, Any, Any]]) -> dict[str, Any]:
    """The first statement's answer; ``sample`` None when it is not needed."""
    rows = [{"key": _key_value(k), "x": CLASSES[a], "y": CLASSES[b], "n": int(n)}
            for k, a, b, n in classes]
    return {"classes": rows, "sample": None}


def _wanted(answer: dict[str, Any], limit: int) -> bool:
    drawn = sum(c["n"] for c in answer["classes"] if c["x"] == c["y"] == "finite")
    return drawn > limit


# ------------------------------------------------------------------ SQLite
def _sqlite_class(c: str) -> str:
    nan, posinf, neginf = sqlite_kinds(c)
    return (f"(CASE WHEN {c} IS NULL THEN 0 WHEN {sqlite_float(c)} IS NOT NULL THEN 5 "
            f"WHEN {nan} THEN 2 WHEN {posinf} THEN 3 WHEN {neginf} THEN 4 ELSE 1 END)")


def catalog_sample(catalog: Catalog, query: Query, x: Field, y: Field, group: Field | None,
                   limit: int, cutoff: int) -> dict[str, Any] | None:
    """The sample of ``query``'s runs in ``catalog`` (see :meth:`Index.sample`); None
    when a field cannot be pushed down or the filter names a field the catalog
    does not know.

    Raises:
        CatalogUnavailable: use the files instead.
    """
    if not _check_fields([group] if group else [], [x, y]):
        return None

    def answer(conn: sqlite3.Connection) -> dict[str, Any] | None:
        scoped = catalog_scope(catalog, conn, query, (x, y, group), cutoff)
        if scoped is None:
            return None
        comp, source = scoped
        key = comp.expr(group) if group else "NULL"
        cx, cy = comp.expr(x), comp.expr(y)
        got = _answer([(decode(k), a, b, n) for k, a, b, n in conn.execute(
            f"SELECT {key} AS k0, {_sqlite_class(cx)} AS a, {_sqlite_class(cy)} AS b, "
            f"count(*) {source} GROUP BY k0, a, b", comp.params)])
        if _wanted(got, limit):
            got["sample"] = [[run_id, sx, sy, decode(k)] for run_id, sx, sy, k in conn.execute(
                f"SELECT r.run_id, {sqlite_float(cx)} AS sx, {sqlite_float(cy)} AS sy, {key} "
                f"{source} AND sx IS NOT NULL AND sy IS NOT NULL "
                f"ORDER BY r.h, r.file LIMIT {comp.bind(limit)}", comp.params)]
        return got

    return catalog_read(catalog, answer)


# ------------------------------------------------------------------ PostgreSQL
def _pg_class(v: str, vargs: list[Any]) -> tuple[str, list[Any]]:
    missing, nan, posinf, neginf, finite = pg_kinds(v)
    parts = [missing, finite, nan, posinf, neginf]
    sql = (f"(CASE WHEN {missing} THEN 0 WHEN {finite} THEN 5 WHEN {nan} THEN 2 "
           f"WHEN {posinf} THEN 3 WHEN {neginf} THEN 4 ELSE 1 END)")
    return sql, [a for p in parts for a in vargs * p.count("%s")]


def pg_sample(index: PostgresIndex, experiment_id: str | None, query: Query, x: Field,
              y: Field, group: Field | None, limit: int, cutoff: int
              ) -> dict[str, Any] | None:
    """The sample of ``query``'s runs from the PostgreSQL index (see
    :meth:`Index.sample`); None when a field cannot be pushed down.

    Raises:
        IndexUnavailableError, StoreError: the index cannot answer.
    """
    if not _check_fields([group] if group else [], [x, y]):
        return None
    sc = pg_scope(index, experiment_id, query, (x, y, group), group, cutoff)
    (vx, xargs), (vy, yargs) = _pg_value(x), _pg_value(y)
    (cx, cxargs), (cy, cyargs) = _pg_class(vx, xargs), _pg_class(vy, yargs)
    with pg_reading(index) as run:
        got = _answer(run(f"SELECT {sc.key}, {cx}, {cy}, count(*) {sc.source} GROUP BY 1, 2, 3",
                          sc.kargs + cxargs + cyargs + sc.sargs))
        if _wanted(got, limit):
            fx, fy = pg_kinds(vx)[-1], pg_kinds(vy)[-1]
            got["sample"] = [[run_id, float(sx), float(sy), _key_value(k)] for run_id, sx, sy, k
                             in run(f"SELECT r.run_id, ({vx})::float8, ({vy})::float8, "
                                    f"{sc.key} {sc.source} AND {fx} AND {fy} "
                                    "ORDER BY hashtext(r.run_id), r.run_id COLLATE \"C\", "
                                    "r.experiment_id COLLATE \"C\" LIMIT %s",
                                    xargs + yargs + sc.kargs + sc.sargs
                                    + xargs * fx.count("%s") + yargs * fy.count("%s")
                                    + [limit])]
    return got


# ------------------------------------------------------------------ the index hooks
def filestore_sample(store: Any, folder: str | None, query: Query, x: Field, y: Field,
                     group: Field | None, limit: int) -> dict[str, Any] | None:
    """:meth:`CatalogIndex.sample <._filestore.CatalogIndex.sample>` (see
    :func:`._histogram.filestore_answer`)."""
    return filestore_answer(store, folder, lambda catalog, cutoff: catalog_sample(
        catalog, query, x, y, group, limit, cutoff), "sample")


def postgres_sample(store: Any, scope: tuple[bool, str | None], query: Query, x: Field,
                    y: Field, group: Field | None, limit: int,
                    check_fields: Callable[[Any, str | None, Query], None]
                    ) -> dict[str, Any] | None:
    """:meth:`PostgresQueries.sample <._pgquery.PostgresQueries.sample>` (see
    :func:`._histogram.postgres_answer`)."""
    empty: dict[str, Any] = {"classes": [], "sample": None}
    return postgres_answer(store, scope, query, check_fields, lambda index, eid, cutoff:
                           pg_sample(index, eid, query, x, y, group, limit, cutoff),
                           empty, "sample")
