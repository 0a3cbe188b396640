"""Grouped statistics of runs computed by the index (aggregation pushdown).

:func:`catalog_aggregate` (the FileStore's SQLite catalog) and
:func:`pg_aggregate` (PostgreSQL) answer :meth:`Index.aggregate
<metalab.store._index._interface.Index.aggregate>`: the runs of a query
grouped by the values of some fields, with per group and per value field
the counts by kind of value and the mean and sum of squared deviations
(``m2``) of the finite numbers.  Only the groups travel, never the runs.

What a value is follows :func:`metalab.analysis._plots_data.as_numbers`:
booleans are not numbers; the texts ``"Infinity"``, ``"-Infinity"`` and
``"NaN"`` (how non-finite numbers are stored in JSON) are the numbers they
stand for, in any namespace; a JSON null is missing.

Numerical stability: ``sum(x*x)`` loses every digit of a spread that is
small next to the mean (values ``1e9 + noise``).  SQLite sums in one pass
the deviations from a *shift* (one value of the field) and their squares,
which is exact for such values; where the error bound of that one pass
(see :func:`_shifted_m2`) cannot vouch for ``m2`` (groups far from the
shift and from each other), a second pass sums the squared deviations from
each group's mean (SQLite has no variance aggregate).  PostgreSQL takes
``avg`` and ``var_samp`` (Youngs-Cramer) of the deviations from a shift in
one pass (see :func:`pg_sql`).

Known difference: PostgreSQL rows of records that are not runs (an unknown
status ..., see :func:`~metalab.query.record_problem`), which a load skips
and reports, are counted here.

Safety: field names reach SQL only as the catalog's generated column names
(SQLite), or as bound parameters (PostgreSQL keys and filters) and literals
quoted by the driver (PostgreSQL value fields, see :func:`_pg_inline_value`);
values are bound parameters.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from metalab.query._ast import Field, Query, without_nan
from metalab.query._fields import named_fields
from metalab.store._index._sqlite import SqliteCompiler, decode

if TYPE_CHECKING:
    from metalab.store._index._catalog import Catalog
    from metalab.store._index._postgres import PostgresIndex

__all__ = ["AGGREGATE_NAMESPACES", "catalog_aggregate", "catalog_read", "catalog_scope",
           "pg_aggregate"]

log = logging.getLogger("metalab.store.catalog")

T = TypeVar("T")

#: the namespaces of fields a group key or a value may come from (plus the top fields below)
AGGREGATE_NAMESPACES = ("params", "metrics", "derived")
#: top-level fields usable as a key (``status`` as readers see it) or, if numeric, a value
TOP_KEYS = ("status", "experiment_id", "duration_ms")
#: the counts of one value field (``other``: the rest, neither missing nor a number)
COUNTS = ("missing", "nonfinite", "finite")
#: SQL text of +infinity for SQLite (the literal overflows to it)
_SQLITE_INF = "9e999"
#: the settings of this connection while it groups: SQLite's defaults.  GROUP BY
#: sorts every run; with the catalog's large page cache and in-memory temp store
#: that sort took 2.4-2.8 s at 10^6 runs against 1.5-1.7 s with the defaults
#: (which sort in cache-sized runs and merge them); measured on 2 CPUs under load
_SORT_PRAGMAS = ("PRAGMA temp_store = DEFAULT", "PRAGMA cache_size = -2000")
#: the float64 unit roundoff
_EPS = 2.0**-53
#: the bound on the relative error of a one-pass ``m2`` above which the exact
#: second pass runs (see :func:`_shifted_m2`)
M2_REL_TOL = 1e-9


def _check_fields(by: Sequence[Field], values: Sequence[Field]) -> bool:
    """Whether every key and value is a field the pushdown handles."""
    ok_key = all(f.ns in TOP_KEYS or (f.ns in AGGREGATE_NAMESPACES and f.name) for f in by)
    ok_value = all(f.ns == "duration_ms" or (f.ns in AGGREGATE_NAMESPACES and f.name)
                   for f in values)
    return ok_key and ok_value


def _key_value(value: Any) -> Any:
    """A group key as the runs' JSON holds it (an infinite number as its text)."""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _value_stats(n: int, missing: Any, nonfinite: Any, finite: Any, mean: Any,
                 m2: Any) -> dict[str, Any]:
    k = int(finite or 0)
    got: dict[str, Any] = {"missing": int(missing or 0), "nonfinite": int(nonfinite or 0),
                           "finite": k}
    got["other"] = n - got["missing"] - got["nonfinite"] - k
    got["mean"] = float(mean) if mean is not None and k else None
    got["m2"] = max(float(m2), 0.0) if m2 is not None and k else None
    return got


# ------------------------------------------------------------------ SQLite
def _sqlite_finite(c: str) -> str:
    """SQL of the catalog cell ``c`` when it is a finite number, else NULL."""
    return (f"(CASE typeof({c}) WHEN 'integer' THEN {c} WHEN 'real' THEN "
            f"(CASE WHEN abs({c}) < {_SQLITE_INF} THEN {c} END) END)")


def _sqlite_nonfinite(c: str) -> str:
    """SQL (0/1) of ``c`` being inf, -inf or NaN (a REAL, the NaN cell, or their texts)."""
    return (f"(CASE typeof({c}) WHEN 'real' THEN abs({c}) >= {_SQLITE_INF} "
            f"WHEN 'text' THEN {c} IN ('Infinity', '-Infinity', 'NaN') "
            f"WHEN 'blob' THEN {c} = X'4E614E' ELSE 0 END)")


def _shifted_m2(k: int, s1: float, s2: float) -> float | None:
    """``m2`` of ``k`` values from the sums ``s1`` and ``s2`` of their deviations
    from a shift and of their squares (one pass), or None when its rounding
    error may exceed :data:`M2_REL_TOL` of it (then the deviations from the
    group's own mean are summed in a second pass).

    ``m2 = s2 - s1^2 / k``; summing ``k`` terms errs by at most ``k * eps``
    times the sum of their magnitudes (plain summation), and the subtraction
    cancels ``s1^2 / k`` of ``s2``: values ``1e9 + noise`` shifted by one of
    them (each deviation exact) lose nothing; groups far from the shift fall
    back to two passes.
    """
    if k < 2:
        return 0.0
    m2 = s2 - s1 * s1 / k
    bound = 2 * k * _EPS * (s2 + s1 * s1 / k)
    if m2 > 0 and bound <= M2_REL_TOL * m2:
        return m2
    if s2 == 0:
        return 0.0
    return None


def catalog_aggregate(catalog: Catalog, query: Query, by: Sequence[Field],
                      values: Sequence[Field], cutoff: int) -> list[dict[str, Any]] | None:
    """The groups of ``query``'s runs in ``catalog`` (see :meth:`Index.aggregate`);
    None when a field cannot be pushed down or the filter names a field the
    catalog does not know (the caller's fallback then raises the right error).

    Raises:
        CatalogUnavailable: use the files instead.
    """
    if not _check_fields(by, values):
        return None
    return catalog_read(
        catalog, lambda conn: _catalog_groups(catalog, conn, query, by, values, cutoff))


def catalog_read(catalog: Catalog, answer: Callable[[sqlite3.Connection], T]) -> T:
    """``answer(conn)`` on a connection to ``catalog``, brought up to date, under its
    lock (so every statement of ``answer`` sees the same runs).

    Raises:
        CatalogUnavailable: use the files instead.
    """
    from metalab.store._index import _catalog as cat

    try:
        with catalog._locked(cat.LOCK_WAIT_S):
            conn = catalog._open()
            try:
                catalog._refresh(conn)
                for pragma in _SORT_PRAGMAS:
                    conn.execute(pragma)
                return answer(conn)
            finally:
                conn.close()
    except (sqlite3.Error, OSError) as exc:
        raise cat.CatalogUnavailable(f"catalog {catalog.path}: {exc}") from exc


def _catalog_source(catalog: Catalog, conn: sqlite3.Connection, derived: bool) -> str:
    """``FROM <the runs in effect> r [derived joins]`` (the plain table when no file
    was appended since the last merge: the view then holds every row not bad,
    and skipping its probe per row saves a third of a full scan)."""
    from metalab.store._index import _catalog as cat

    catalog._live_runs(conn)
    fresh = conn.execute("SELECT 1 FROM temp.latest LIMIT 1").fetchone() is None
    runs = "main.runs" if fresh else cat._LIVE["runs"]
    join = (f" LEFT JOIN {cat._TABLE['derived']} d ON d.file = r.file"
            f" LEFT JOIN {cat._DELTA['derived']} dn ON dn.file = r.file") if derived else ""
    return f"FROM {runs} r{join}"


def catalog_scope(catalog: Catalog, conn: sqlite3.Connection, query: Query,
                  used: Sequence[Field | None], cutoff: int
                  ) -> tuple[SqliteCompiler, str] | None:
    """(the compiler of the catalog's columns, ``FROM ... WHERE ...`` of the runs of
    ``query``) for statements over the fields ``used``; None when the filter
    names a field the catalog does not know (the fallback raises the right error)."""
    fields = catalog._fields(conn)
    if any(k not in fields for k in named_fields(query)):
        return None

    def column_of(field: Field) -> str | None:
        col = fields.get((field.ns, field.name))
        if col is None:
            return None
        if field.ns == "derived":
            return f"(CASE WHEN dn.file IS NULL THEN d.{col} ELSE dn.{col} END)"
        return f"r.{col}"

    comp = SqliteCompiler(column_of, cutoff)
    where = comp.where(without_nan(query.where))
    derived = query.uses_derived or any(f.ns == "derived" for f in used if f)
    return comp, f"{_catalog_source(catalog, conn, derived)} WHERE r.bad = 0 AND {where}"


def _catalog_groups(catalog: Catalog, conn: sqlite3.Connection, query: Query,
                    by: Sequence[Field], values: Sequence[Field],
                    cutoff: int) -> list[dict[str, Any]] | None:
    scoped = catalog_scope(catalog, conn, query, (*by, *values), cutoff)
    if scoped is None:
        return None
    comp, source = scoped
    keys = [comp.expr(f) for f in by]
    cells = [comp.expr(f) for f in values]
    # (numbered parameters: a statement must use the highest one bound, so those
    # below name every key as well, and the second pass gets no shift)
    base = list(comp.params)
    shifts = []
    for c in cells:  # (any value of the field: the one-pass sums are taken around it)
        got = conn.execute(f"SELECT {', '.join([_sqlite_finite(c) + ' AS v', *keys])} "
                           f"{source} AND v IS NOT NULL LIMIT 1", base).fetchone()
        shifts.append(float(got[0]) if got else 0.0)
    stats: list[str] = []
    for c, shift in zip(cells, shifts, strict=True):
        fv, k = _sqlite_finite(c), comp.bind(shift)
        stats += [f"count({c})", f"sum({_sqlite_nonfinite(c)})", f"count({fv})",
                  f"{k} + 0.0", f"sum({fv} - {k})", f"sum(({fv} - {k}) * ({fv} - {k}))"]
    group = f" GROUP BY {', '.join(f'k{i}' for i in range(len(keys)))}" if keys else ""
    conn.execute("DROP TABLE IF EXISTS temp.agg_groups")
    conn.execute(
        "CREATE TEMP TABLE agg_groups AS SELECT "
        + ", ".join([*(f"{k} AS k{i}" for i, k in enumerate(keys)), "count(*) AS n",
                     *(f"{s} AS s{i}" for i, s in enumerate(stats))])
        + f" {source}{group}", comp.params)
    rows = conn.execute("SELECT rowid, * FROM temp.agg_groups").fetchall()
    nk, per = len(keys), 6
    m2: dict[tuple[int, int], float | None] = {}
    for row in rows:
        for i in range(len(shifts)):
            _, _, k, _, s1, s2 = row[2 + nk + i * per:2 + nk + (i + 1) * per]
            m2[row[0], i] = _shifted_m2(int(k), s1, s2) if k else 0.0
    if any(m is None for m in m2.values()):
        m2.update(_catalog_m2(conn, keys, cells, source, base, per))
    out = []
    for row in rows:
        n = int(row[1 + nk])
        got = []
        for i in range(len(cells)):
            present, nonfinite, k, _, s1, _ = row[2 + nk + i * per:2 + nk + (i + 1) * per]
            # (the mean around the shift: its digits are those of the spread)
            mean = shifts[i] + s1 / k if k else None
            got.append(_value_stats(n, n - int(present), nonfinite, k, mean, m2[row[0], i]))
        out.append({"keys": [_key_value(decode(c)) for c in row[1:1 + nk]], "n": n,
                    "values": got})
    return out


def _catalog_m2(conn: sqlite3.Connection, keys: list[str], cells: list[str], source: str,
                params: list[Any], per: int) -> dict[tuple[int, int], float | None]:
    """Second pass: per group (rowid of ``temp.agg_groups``) and value, the sum of
    squared deviations of the finite numbers from the group's mean."""
    on = " AND ".join(f"a.k{i} IS {k}" for i, k in enumerate(keys)) or "1"
    if keys:
        conn.execute("CREATE INDEX temp.agg_groups_keys ON agg_groups ("
                     + ", ".join(f"k{i}" for i in range(len(keys))) + ")")
    devs = []
    for i, c in enumerate(cells):
        # (the group's mean: its shift (a column, so the statement binds no shift)
        # plus the mean deviation from it)
        shift, s1, k = (f"a.s{i * per + j}" for j in (3, 4, 2))
        fv, mean = _sqlite_finite(c), f"({shift} + {s1} / {k})"
        devs.append(f"sum(({fv} - {mean}) * ({fv} - {mean}))")
    # (the runs drive the join: each probes the few groups through their index)
    head, _, cond = source.partition(" WHERE ")
    sql = (f"SELECT a.rowid, {', '.join(devs)} {head} CROSS JOIN temp.agg_groups a "
           f"WHERE ({on}) AND {cond} GROUP BY a.rowid")
    return {(row[0], i): row[1 + i] for row in conn.execute(sql, params)
            for i in range(len(cells))}


# ------------------------------------------------------------------ PostgreSQL
def _pg_kinds(v: str) -> list[str]:
    """SQL (boolean) of missing, non-finite (a text of inf, -inf or NaN) and finite
    (a JSON number) for the JSONB value ``v``."""
    return [
        f"({v} IS NULL OR jsonb_typeof({v}) = 'null')",
        f"({v} IN ('\"Infinity\"'::jsonb, '\"-Infinity\"'::jsonb, '\"NaN\"'::jsonb))",
        f"(jsonb_typeof({v}) = 'number')",
    ]


def _pg_value(field: Field) -> tuple[str, list[Any]]:
    """JSONB SQL of a value field (``duration_ms`` made JSON), with its args."""
    if field.ns == "duration_ms":
        # (to_jsonb writes a non-finite float8 as its text, as the run files do)
        return "to_jsonb(r.duration_ms)", []
    source = 'd."values"' if field.ns == "derived" else f"r.{field.ns}"
    return f"({source} -> %s)", [field.name]


def _pg_source(comp: Any, query: Query, experiment_id: str | None, derived: bool
               ) -> tuple[str, list[Any]]:
    """(``FROM ... WHERE ...`` of the runs of ``query`` in scope, its args)."""
    where, wargs = comp.where(without_nan(query.where), top=True)
    join = (" LEFT JOIN {s}.derived d ON d.experiment_id = r.experiment_id "
            "AND d.run_id = r.run_id") if derived or query.uses_derived else ""
    scope, sargs = ("r.experiment_id = %s AND ", [experiment_id]) if experiment_id else ("", [])
    return f"FROM {{s}}.runs r{join} WHERE {scope}{where}", sargs + wargs


def _pg_inline_value(field: Field, quote: Callable[[str], str]) -> str:
    """JSONB SQL of a value field with its name written in as a quoted literal
    (``quote``: the driver's quoting), escaped for the ``{s}`` formatting and
    the ``%s`` placeholders this SQL still goes through."""
    if field.ns == "duration_ms":
        return "to_jsonb(r.duration_ms)"
    source = 'd."values"' if field.ns == "derived" else f"r.{field.ns}"
    name = quote(field.name).replace("%", "%%").replace("{", "{{").replace("}", "}}")
    return f"({source} -> {name})"


def pg_sql(by: Sequence[Field], values: Sequence[str], comp: Any, source: str,
           shifts: Sequence[float], breakdown: bool) -> tuple[str, list[Any]]:
    """(SQL with ``{s}`` for the schema, args before those of ``source``) of the groups.

    ``values``: the JSONB SQL of each value field (no placeholders, see
    :func:`_pg_inline_value`).  Per value: the count of its JSON numbers and
    ``avg`` and ``var_samp`` of their deviations from its shift (a finite
    float written in).  The two aggregates have the same argument and
    filter, so PostgreSQL feeds them one transition state: each number is
    converted once (JSON number -> ``float8`` through ``numeric``, the costly
    step of each run), and the variance is Youngs-Cramer's (stable for
    values ``1e9 + noise``).  With ``breakdown``, the counts of missing and
    non-finite values too (the rest of the runs are ``other``).
    """
    cols: list[str] = []
    args: list[Any] = []
    for f in by:
        if f.ns in AGGREGATE_NAMESPACES:
            sql_, a = _pg_value(f)
        else:
            acc = comp.acc(f)
            sql_, a = acc.sql, list(acc.args)
        cols.append(sql_)
        args += a
    cols.append("count(*)")
    for v, shift in zip(values, shifts, strict=True):
        missing, nonfinite, finite = _pg_kinds(v)
        assert math.isfinite(shift)
        deviation = f"(({v})::float8 - '{float(shift)!r}'::float8) FILTER (WHERE {finite})"
        cols += [f"count(*) FILTER (WHERE {finite})", f"avg{deviation}", f"var_samp{deviation}"]
        if breakdown:
            cols += [f"count(*) FILTER (WHERE {missing})", f"count(*) FILTER (WHERE {nonfinite})"]
    group = (" GROUP BY " + ", ".join(str(i + 1) for i in range(len(by)))) if by else ""
    return f"SELECT {', '.join(cols)} {source}{group}", args


def pg_aggregate(index: PostgresIndex, experiment_id: str | None, query: Query,
                 by: Sequence[Field], values: Sequence[Field],
                 cutoff: int) -> list[dict[str, Any]] | None:
    """The groups of ``query`` from the PostgreSQL index (see :meth:`Index.aggregate`);
    None when a field cannot be pushed down.

    One statement (see :func:`pg_sql`); when some run's value is not a JSON
    number, a second one counts the missing and non-finite values.

    Raises:
        IndexUnavailableError, StoreError: the index cannot answer.
    """
    from psycopg import sql

    from metalab.query._ast import fields_of
    from metalab.store._index._pgsql import PgCompiler

    if not _check_fields(by, values):
        return None
    named = sorted({(f.ns, f.name) for f in fields_of(query.where)
                    if f.ns in ("params", "metrics") and f.name})
    comp = PgCompiler(cutoff, frozenset(index.indexed_fields(named)))
    derived = any(f.ns == "derived" for f in (*by, *values))
    source, sargs = _pg_source(comp, query, experiment_id, derived)

    def run(conn: Any, text: str, args: list[Any]) -> list[tuple[Any, ...]]:
        stmt = sql.SQL(text).format(s=sql.Identifier(index.schema))
        return list(conn.execute(stmt, args).fetchall())

    with index.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL work_mem = '64MB'")
        # (the planner cannot count the groups of a JSON key, guesses one per run and
        # sorts every run to group them, spilling to disk; grouping by hashing, as
        # this forces, took 2.2-2.4 s at 10^6 runs against 3.9-4.0 s sorted, on 2
        # CPUs under load; a hash table larger than memory spills to disk too)
        conn.execute("SET LOCAL enable_sort = off")
        quote = lambda name: sql.Literal(name).as_string(conn)  # noqa: E731
        inline = [_pg_inline_value(f, quote) for f in values]
        shifts = []
        for v in inline:  # (any value of the field: the deviations are taken from it)
            got = run(conn, f"SELECT ({v})::float8 {source} AND jsonb_typeof({v}) = 'number' "
                      "LIMIT 1", sargs)
            shifts.append(float(got[0][0]) if got else 0.0)
        text, args = pg_sql(by, inline, comp, source, shifts, breakdown=False)
        rows = run(conn, text, args + sargs)
        per = 3
        if any(row[len(by)] != row[len(by) + 1 + i * per]
               for row in rows for i in range(len(values))):
            text, args = pg_sql(by, inline, comp, source, shifts, breakdown=True)
            rows = run(conn, text, args + sargs)
            per = 5
    return [_pg_group(row, len(by), shifts, per) for row in rows]


def _pg_group(row: tuple[Any, ...], n_keys: int, shifts: list[float],
              per: int) -> dict[str, Any]:
    """A group from a row of :func:`pg_sql` (``per``: columns per value)."""
    n = int(row[n_keys])
    got = []
    for i, shift in enumerate(shifts):
        cells = row[n_keys + 1 + i * per: n_keys + 1 + (i + 1) * per]
        k = int(cells[0] or 0)
        missing, nonfinite = cells[3:5] if per == 5 else (0, 0)
        # (the mean around the shift: its digits are those of the spread)
        mean = shift + float(cells[1]) if k else None
        m2 = float(cells[2]) * (k - 1) if k > 1 and cells[2] is not None else 0.0
        got.append(_value_stats(n, missing, nonfinite, k, mean, m2))
    return {"keys": [_key_value(k) for k in row[:n_keys]], "n": n, "values": got}


# ------------------------------------------------------------------ the index hooks
def filestore_aggregate(store: Any, folder: str | None, query: Query,
                        by: Sequence[Field], values: Sequence[Field]
                        ) -> list[dict[str, Any]] | None:
    """:meth:`CatalogIndex.aggregate <._filestore.CatalogIndex.aggregate>`: the catalog
    of ``folder`` (the one experiment folder in scope) answers; None for
    collections spanning several folders (no ``folder``), a read-only store or
    an unusable catalog."""
    import os

    from metalab.query._liveness import lost_cutoff
    from metalab.store._index._catalog import Catalog, CatalogUnavailable

    if store.read_only or folder is None or not os.path.isdir(os.path.join(folder, "runs")):
        return None
    try:
        return catalog_aggregate(Catalog(folder), query, by, values, lost_cutoff())
    except CatalogUnavailable as exc:
        log.info("aggregating from loaded runs (catalog unavailable: %s)", exc)
    return None


def postgres_aggregate(store: Any, scope: tuple[bool, str | None], query: Query,
                       by: Sequence[Field], values: Sequence[Field],
                       check_fields: Callable[[Any, str | None, Query], None]
                       ) -> list[dict[str, Any]] | None:
    """:meth:`PostgresQueries.aggregate <._pgquery.PostgresQueries.aggregate>`: the
    index answers when the journal says it is current (a failure is warned
    about and answers None).  ``scope``: (within the store's scope, the
    experiment to read); ``check_fields(index, experiment, query)`` raises
    UnknownFieldError for a filter naming a field no run has."""
    from metalab._errors import IndexUnavailableError, StoreError
    from metalab.query._liveness import lost_cutoff

    in_scope, experiment_id = scope
    if not in_scope:
        return []
    if not store._index_current(experiment_id):
        return None
    try:
        check_fields(store._index, experiment_id, query)
        return pg_aggregate(store._index, experiment_id, query, by, values, lost_cutoff())
    except (IndexUnavailableError, StoreError, ImportError) as exc:
        store._warn("aggregate", exc)
    return None
