"""Histograms of runs computed by the index (histogram pushdown).

:func:`catalog_histogram` (the FileStore's SQLite catalog) and
:func:`pg_histogram` (PostgreSQL) answer :meth:`Index.histogram
<metalab.store._index._interface.Index.histogram>` in two statements within
one lock (SQLite) or transaction (PostgreSQL), so both see the same runs:

1. the range: per value of the group field (one group without it) the runs,
   and of the value field the counts of missing values, NaN, +inf, -inf and
   finite numbers, and the least and greatest finite number;
2. the counts per bin of the finite numbers (per group), for the bin edges
   the caller derives from the range (``edges(groups)``; the caller bins as
   ``numpy.histogram`` does, so the edges come from numpy itself).

A bin holds the values ``edges[i] <= v < edges[i + 1]``, the last one also
``v == edges[-1]`` (``numpy.histogram``), compared as float64 (an integer
value as the float it rounds to, as numpy reads it).  PostgreSQL finds each
value's bin with ``width_bucket`` over the inner edges (exact comparisons);
SQLite has no such function: it groups by a bucket computed by arithmetic
(monotone in the value, so each bucket is an interval) with its least and
greatest value, and only a bucket that straddles an edge (rounding: rare) is
split by comparing its values with the edges inside it (a third statement).

What a value is follows :mod:`._aggregate`: booleans are not numbers; the
texts ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` are those numbers; a JSON
null is missing.  Field names reach SQL only as the catalog's generated
column names (SQLite) or as bound parameters (PostgreSQL); values and edges
are bound parameters.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from metalab._errors import ValidationError
from metalab.query._ast import Field, Query
from metalab.store._index._aggregate import (
    _check_fields,
    _key_value,
    _pg_kinds,
    _pg_source,
    _pg_value,
    _sqlite_finite,
    catalog_read,
    catalog_scope,
)
from metalab.store._index._sqlite import SqliteCompiler, decode

if TYPE_CHECKING:
    from metalab.store._index._catalog import Catalog
    from metalab.store._index._postgres import PostgresIndex

#: floats below this magnitude that are whole numbers are exact as integers
_EXACT_INT = 2.0**53

__all__ = ["RANGE_COUNTS", "Edges", "catalog_histogram", "catalog_read", "catalog_scope",
           "check_edges", "pg_histogram", "pg_kinds", "pg_reading", "pg_scope", "sqlite_float", "sqlite_kinds"]

log = logging.getLogger("metalab.store.catalog")

#: the counts of the value field per group (``other``: the rest, not a number)
RANGE_COUNTS = ("missing", "nan", "posinf", "neginf", "finite")
#: the caller's bin edges from the range groups (None: no counts wanted)
Edges = Callable[[list[dict[str, Any]]], Sequence[float] | None]
T = TypeVar("T")
#: SQLite SQL of +infinity (the literal overflows to it)
_SQLITE_INF = "9e999"


def check_edges(edges: Sequence[float], groups: list[dict[str, Any]]) -> list[float]:
    """``edges`` as floats, checked: finite, ascending (ties allowed), at least two,
    spanning every group's finite values.

    Raises:
        ValidationError: edges that do not satisfy this.
    """
    got = [float(e) for e in edges]
    if len(got) < 2 or not all(math.isfinite(e) for e in got) or any(
            a > b for a, b in itertools.pairwise(got)):
        raise ValidationError("histogram edges must be at least two finite numbers in "
                              "ascending order")
    for g in groups:
        if g["finite"] and not got[0] <= g["min"] <= g["max"] <= got[-1]:
            raise ValidationError(f"histogram edges {got[0]}..{got[-1]} do not span the "
                                  f"values {g['min']}..{g['max']}")
    return got


def _range_group(key: Any, n: Any, counts: Sequence[Any], low: Any, high: Any
                 ) -> dict[str, Any]:
    got: dict[str, Any] = {"key": _key_value(key), "n": int(n)}
    got.update((k, int(c or 0)) for k, c in zip(RANGE_COUNTS, counts, strict=True))
    got["other"] = got["n"] - sum(got[k] for k in RANGE_COUNTS)
    got["min"] = float(low) if got["finite"] else None
    got["max"] = float(high) if got["finite"] else None
    return got


def _true_bin(edges: list[float], v: float) -> int:
    """The bin of ``v`` as ``numpy.histogram`` finds it: the inner edges ``<= v``."""
    return bisect.bisect_right(edges, v, 1, len(edges) - 1) - 1


# ------------------------------------------------------------------ SQLite
def sqlite_kinds(c: str) -> list[str]:
    """SQL (0/1/NULL) of the cell ``c`` being NaN, +inf, -inf (a REAL, the NaN
    cell, or their texts)."""
    return [
        f"({c} IS X'4E614E' OR {c} = 'NaN')",
        f"({c} = 'Infinity' OR (typeof({c}) = 'real' AND {c} >= {_SQLITE_INF}))",
        f"({c} = '-Infinity' OR (typeof({c}) = 'real' AND {c} <= -{_SQLITE_INF}))",
    ]


def sqlite_float(c: str) -> str:
    """SQL of the float64 the catalog cell ``c`` stands for when it is a finite
    number (an integer as the float it rounds to, as numpy reads it), else NULL."""
    return f"({_sqlite_finite(c)} + 0.0)"


def catalog_histogram(catalog: Catalog, query: Query, value: Field, group: Field | None,
                      edges: Edges, cutoff: int) -> list[dict[str, Any]] | None:
    """The histogram groups of ``query``'s runs in ``catalog`` (see
    :meth:`Index.histogram`); None when a field cannot be pushed down or the
    filter names a field the catalog does not know.

    Raises:
        CatalogUnavailable: use the files instead.
        ValidationError: ``edges`` gave unusable edges.
    """
    if not _check_fields([group] if group else [], [value]):
        return None
    return catalog_read(catalog, lambda conn: _catalog_bins(
        catalog, conn, query, value, group, edges, cutoff))


def _catalog_bins(catalog: Catalog, conn: sqlite3.Connection, query: Query, value: Field,
                  group: Field | None, edges_of: Edges, cutoff: int
                  ) -> list[dict[str, Any]] | None:
    scoped = catalog_scope(catalog, conn, query, (value, group), cutoff)
    if scoped is None:
        return None
    comp, source = scoped
    key = comp.expr(group) if group else "NULL"
    c = comp.expr(value)
    fv = sqlite_float(c)
    stats = ["count(*)", f"count(*) - count({c})", *(f"sum({k})" for k in sqlite_kinds(c)),
             f"count({fv})", f"min({fv})", f"max({fv})"]
    grouped = " GROUP BY k0" if group else ""
    rows = [row for row in conn.execute(f"SELECT {key} AS k0, {', '.join(stats)} {source}"
                                        f"{grouped}", comp.params) if row[1]]
    groups = [_range_group(decode(row[0]), row[1], row[2:7], row[7], row[8]) for row in rows]
    wanted = edges_of(groups)
    if wanted is None:
        return groups
    edges = check_edges(wanted, groups)
    bins = len(edges) - 1
    span = edges[-1] - edges[0]
    # (a bucket by arithmetic: monotone in the value, so each bucket is an interval)
    scale = bins / span if math.isfinite(span) and span > 0 else 0.0
    if not math.isfinite(scale):  # (a span so small its inverse overflows: one bucket,
        scale = 0.0               # split below)
    bucket = (f"min(max(CAST(({fv} - {comp.bind(edges[0])}) * {comp.bind(scale)} "
              f"AS INTEGER), 0), {bins - 1})")
    by_key = {row[0]: g for row, g in zip(rows, groups, strict=True)}
    for g in groups:
        g["counts"] = [0] * bins
    straddling: list[tuple[Any, int, float]] = []
    for k0, b, n, low, high in conn.execute(
            f"SELECT {key} AS k0, {bucket} AS b, count(*), min({fv}), max({fv}) "
            f"{source} AND {fv} IS NOT NULL GROUP BY k0, b", comp.params):
        first = _true_bin(edges, float(low))
        if first == _true_bin(edges, float(high)):
            by_key[k0]["counts"][first] += int(n)
        else:
            straddling.append((k0, int(b), float(low)))
    if straddling:
        _split_buckets(conn, comp, key, fv, bucket, source, edges, straddling, by_key)
    return groups


def _split_buckets(conn: sqlite3.Connection, comp: SqliteCompiler, key: str, fv: str,
                   bucket: str, source: str, edges: list[float],
                   straddling: list[tuple[Any, int, float]], by_key: dict[Any, Any]) -> None:
    """Count the values of the buckets that straddle an edge by their exact bins:
    a value's bin is its bucket's least value's bin plus the edges inside the
    bucket that are ``<= v`` (every such edge is among ``inner``)."""
    lows = {(k0, b): low for k0, b, low in straddling}
    inner = sorted({i for _, _, low in straddling for i in range(1, len(edges) - 1)
                    if edges[i] > low})
    above = " + ".join(f"({fv} >= {comp.bind(edges[i])})" for i in inner) or "0"
    buckets = ", ".join(comp.bind(b) for b in sorted({b for _, b, _ in straddling}))
    for k0, b, extra, n in conn.execute(
            f"SELECT {key} AS k0, {bucket} AS b, {above} AS extra, count(*) {source} "
            f"AND {fv} IS NOT NULL AND b IN ({buckets}) GROUP BY k0, b, extra", comp.params):
        low = lows.get((k0, b))
        if low is None:  # (this group's bucket did not straddle: counted already)
            continue
        below = sum(1 for i in inner if edges[i] <= low)
        by_key[k0]["counts"][_true_bin(edges, low) + int(extra) - below] += int(n)


# ------------------------------------------------------------------ PostgreSQL
def pg_kinds(v: str) -> list[str]:
    """SQL (boolean) of each of :data:`RANGE_COUNTS` for the JSONB value ``v``."""
    missing, _, finite = _pg_kinds(v)
    return [missing, f"({v} = '\"NaN\"'::jsonb)", f"({v} = '\"Infinity\"'::jsonb)",
            f"({v} = '\"-Infinity\"'::jsonb)", finite]


@dataclass
class PgScope:
    """What the statements over the runs of one query in PostgreSQL share."""

    comp: Any
    #: ``FROM ... WHERE ...`` (``{s}``: the schema) and its arguments
    source: str
    sargs: list[Any]
    #: the JSONB SQL of the group field (NULL without one) and its arguments
    key: str
    kargs: list[Any]


def pg_scope(index: PostgresIndex, experiment_id: str | None, query: Query,
             used: Sequence[Field | None], group: Field | None, cutoff: int) -> PgScope:
    """The :class:`PgScope` of ``query`` for statements over the fields ``used``."""
    from metalab.query._ast import fields_of
    from metalab.store._index._aggregate import AGGREGATE_NAMESPACES
    from metalab.store._index._pgsql import PgCompiler

    named = sorted({(f.ns, f.name) for f in fields_of(query.where)
                    if f.ns in ("params", "metrics") and f.name})
    comp = PgCompiler(cutoff, frozenset(index.indexed_fields(named)))
    derived = any(f.ns == "derived" for f in used if f)
    source, sargs = _pg_source(comp, query, experiment_id, derived)
    key, kargs = "NULL::jsonb", list[Any]()
    if group is not None and group.ns in AGGREGATE_NAMESPACES:
        key, kargs = _pg_value(group)
    elif group is not None:
        acc = comp.acc(group)
        key, kargs = acc.sql, list(acc.args)
    return PgScope(comp, source, sargs, key, kargs)


@contextlib.contextmanager
def pg_reading(index: PostgresIndex) -> Iterator[Callable[[str, list[Any]], list[Any]]]:
    """``run(sql, args)`` (``{s}`` in ``sql``: the schema) for statements in one
    repeatable-read transaction (so they all see the same runs: a run written
    between a histogram's range and its bins is in neither), grouping by hashing."""
    from psycopg import sql

    with index.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute("SET LOCAL enable_sort = off")  # (hash the groups: see _aggregate)
        # (the sort a sample needs then costs 10^10 to the planner, which compiles
        # the statement: 0.3-0.6 s of JIT for a 0.2 s scan of 10^5 runs)
        conn.execute("SET LOCAL jit = off")

        def run(text: str, args: list[Any]) -> list[Any]:
            stmt = sql.SQL(text).format(s=sql.Identifier(index.schema))
            return list(conn.execute(stmt, args).fetchall())

        yield run


def pg_histogram(index: PostgresIndex, experiment_id: str | None, query: Query,
                 value: Field, group: Field | None, edges_of: Edges,
                 cutoff: int) -> list[dict[str, Any]] | None:
    """The histogram groups of ``query`` from the PostgreSQL index (see
    :meth:`Index.histogram`); None when a field cannot be pushed down.

    Raises:
        IndexUnavailableError, StoreError: the index cannot answer.
        ValidationError: ``edges`` gave unusable edges.
    """
    if not _check_fields([group] if group else [], [value]):
        return None
    sc = pg_scope(index, experiment_id, query, (value, group), group, cutoff)
    v, vargs = _pg_value(value)
    counts = pg_kinds(v)
    number, finite = f"({v})::float8", f"FILTER (WHERE {counts[-1]})"
    cols = ["count(*)", *(f"count(*) FILTER (WHERE {k})" for k in counts),
            f"min({number}) {finite}", f"max({number}) {finite}"]
    cargs = [a for k in counts for a in vargs * k.count("%s")]
    with pg_reading(index) as run:
        grouped = " GROUP BY 1" if group else ""
        rows = run(f"SELECT {sc.key}, {', '.join(cols)} {sc.source}{grouped}",
                   sc.kargs + cargs + vargs * 4 + sc.sargs)
        groups = [_range_group(row[0], row[1], row[2:7], row[7], row[8])
                  for row in rows if row[1]]
        wanted = edges_of(groups)
        if wanted is None:
            return groups
        edges = check_edges(wanted, groups)
        by_key = {_key_text(g["key"]): g for g in groups}
        for g in groups:
            g["counts"] = [0] * (len(edges) - 1)
        # (width_bucket: how many of the inner edges are <= the value, by binary search)
        bucket, bargs = ("width_bucket(" + number + ", %s::float8[])", [*vargs, edges[1:-1]]) \
            if len(edges) > 2 else ("0", [])
        for k, b, n in run(f"SELECT {sc.key}, {bucket}, count(*) {sc.source} AND {counts[-1]} "
                           "GROUP BY 1, 2", sc.kargs + bargs + sc.sargs + vargs):
            found = by_key.get(_key_text(_key_value(k)))
            if found is None or not 0 <= int(b) < len(found["counts"]):
                log.warning("histogram from loaded runs: the index's bins did not match its "
                            "range (group %r)", k)
                return None  # (the loaded path draws it exactly)
            found["counts"][int(b)] += int(n)
    return groups


def _key_text(key: Any) -> bytes:
    """The lookup text of a group key: jsonb groups ``1`` and ``1.0`` as one value
    and may show either, so a whole float is written as the integer."""
    from metalab._internal._json import dumps

    if isinstance(key, float) and key.is_integer() and abs(key) < _EXACT_INT:
        key = int(key)
    return dumps(key)


# ------------------------------------------------------------------ the index hooks
def filestore_answer(store: Any, folder: str | None,
                     answer: Callable[[Catalog, int], T | None], what: str) -> T | None:
    """``answer(catalog, lost cutoff)`` from the catalog of ``folder`` (the one
    experiment folder in scope); None for collections spanning several
    folders (no ``folder``), a read-only store or an unusable catalog."""
    import os

    from metalab.query._liveness import lost_cutoff
    from metalab.store._index._catalog import Catalog, CatalogUnavailable

    if store.read_only or folder is None or not os.path.isdir(os.path.join(folder, "runs")):
        return None
    try:
        return answer(Catalog(folder), lost_cutoff())
    except CatalogUnavailable as exc:
        log.info("%s from loaded runs (catalog unavailable: %s)", what, exc)
    return None


def postgres_answer(store: Any, scope: tuple[bool, str | None], query: Query,
                    check_fields: Callable[[Any, str | None, Query], None],
                    answer: Callable[[Any, str | None, int], T | None], empty: T,
                    what: str) -> T | None:
    """``answer(index, experiment, lost cutoff)`` from the PostgreSQL index when the
    journal says it is current (a failure is warned about and answers None);
    ``empty`` outside the store's scope.  ``scope``: (within the store's scope,
    the experiment to read); ``check_fields(index, experiment, query)`` raises
    UnknownFieldError for a filter naming a field no run has."""
    from metalab._errors import IndexUnavailableError, StoreError
    from metalab.query._liveness import lost_cutoff

    in_scope, experiment_id = scope
    if not in_scope:
        return empty
    if not store._index_current(experiment_id):
        return None
    try:
        check_fields(store._index, experiment_id, query)
        return answer(store._index, experiment_id, lost_cutoff())
    except (IndexUnavailableError, StoreError, ImportError) as exc:
        store._warn(what, exc)
    return None


def filestore_histogram(store: Any, folder: str | None, query: Query, value: Field,
                        group: Field | None, edges: Edges) -> list[dict[str, Any]] | None:
    """:meth:`CatalogIndex.histogram <._filestore.CatalogIndex.histogram>` (see
    :func:`filestore_answer`)."""
    return filestore_answer(store, folder, lambda catalog, cutoff: catalog_histogram(
        catalog, query, value, group, edges, cutoff), "histogram")


def postgres_histogram(store: Any, scope: tuple[bool, str | None], query: Query,
                       value: Field, group: Field | None, edges: Edges,
                       check_fields: Callable[[Any, str | None, Query], None]
                       ) -> list[dict[str, Any]] | None:
    """:meth:`PostgresQueries.histogram <._pgquery.PostgresQueries.histogram>` (see
    :func:`postgres_answer`)."""
    empty: list[dict[str, Any]] = []
    return postgres_answer(store, scope, query, check_fields, lambda index, eid, cutoff:
                           pg_histogram(index, eid, query, value, group, edges, cutoff),
                           empty, "histogram")
