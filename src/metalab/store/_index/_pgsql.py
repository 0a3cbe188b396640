"""Compile a :class:`Query` to PostgreSQL over the PostgresStore index tables.

The SQL text is composed with :mod:`psycopg.sql`: the schema is an
:class:`~psycopg.sql.Identifier`, every value and every JSON key (parameter,
metric and derived names) is a bound parameter (``params -> %s``); nothing
user-given is ever part of the SQL text.

Each atomic predicate is a ``CASE`` whose type test runs before the typed
comparison and whose ``ELSE`` is false, so predicates are never NULL and
``NOT`` is plain negation, as in the in-memory engine.  The exception: a
numeric comparison on a params/metrics field that is a conjunct of the whole
filter (not under ``NOT`` / ``OR``) is a strict SQL/JSON path test (no match
for a missing key or a non-number, which drops the row exactly as false does
there; numbers compared exactly), and, for a field with an expression index
made by ``PostgresIndex.create_field_index``, also the plain
``number_sql(...) <= %s`` that index matches (a float comparison that never
excludes a row the exact test keeps).  Strings compare with ``COLLATE "C"`` (code point order, like
Python).  The query must run with ``TimeZone = 'UTC'`` (times without a zone
are UTC, as in Python).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from metalab.query._ast import (
    And,
    Between,
    Compare,
    Contains,
    Field,
    In,
    IsNull,
    Node,
    Not,
    Or,
    Query,
    StartsWith,
    TrueNode,
    as_float,
    kind_of,
    without_nan,
)
from metalab.query._liveness import lost_status_sql

__all__ = ["TIME_RE", "PgCompiler", "field_index_name", "from_micros", "number_sql", "stamp_sql"]

#: what a heartbeat must look like to be cast to a time in SQL (else: not lost)
TIME_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stamp_sql(column: str, pattern: str = "%s") -> str:
    """The liveness stamp held as text in ``column`` as a ``timestamptz``, NULL when it is
    not a time (``pattern``: the placeholder bound to :data:`TIME_RE`)."""
    return f"(CASE WHEN {column} ~ {pattern} THEN {column}::timestamptz END)"


def field_index_name(namespace: str, name: str, *, form: int = 2) -> str:
    """The name :meth:`PostgresIndex.create_field_index` gives the index of one field
    (a digest of the field name: any name fits PostgreSQL's 63-byte limit).

    An index of a metrics field on the expression of ``form`` 1 (which reads a
    stored ``"Infinity"`` as no number) has the name of ``form=1``: it no
    longer matches the queries, and :meth:`PostgresIndex.create_field_index`
    replaces it.
    """
    key = f"{namespace}\x00{name}" + ("\x00number-texts" if namespace == "metrics"
                                      and form >= 2 else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"runs_{namespace}_{digest}_idx"


def number_sql(column: str, key: str, numbers: bool = False) -> str:
    """The float value of ``column -> key`` when it is a JSON number, else NULL.

    ``key`` is SQL (a placeholder in queries, a literal in index DDL).  A
    query and an expression index built from the same text match, so a top
    level numeric comparison can use an index on that field.  ``numbers``
    (metrics): the texts ``"Infinity"`` / ``"-Infinity"`` are those numbers
    too (a stored ``"NaN"`` gives NULL: it matches no comparison).
    """
    if not numbers:
        return (f"(CASE WHEN jsonb_typeof({column} -> {key}) = 'number' "
                f"THEN ({column} -> {key})::float8 END)")
    return (f"(CASE jsonb_typeof({column} -> {key}) WHEN 'number' "
            f"THEN ({column} -> {key})::float8 WHEN 'string' THEN "
            f"(CASE {column} ->> {key} WHEN 'Infinity' THEN 'Infinity'::float8 "
            "WHEN '-Infinity' THEN '-Infinity'::float8 END) END)")


#: the stored texts of non-finite numbers as JSONB (see metalab._internal._json)
_NON_FINITE = "('\"Infinity\"'::jsonb, '\"-Infinity\"'::jsonb, '\"NaN\"'::jsonb)"
#: the JSON path test a stored infinity passes for each comparison with a finite number
_PATH_INFINITY = {">": '"Infinity"', ">=": '"Infinity"', "<": '"-Infinity"',
                  "<=": '"-Infinity"'}


#: query comparison -> SQL/JSON path comparison
_PATH_OP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=="}


def _json_key(name: str) -> str:
    """``name`` as a JSON path key: a double-quoted string with JSON escapes."""
    return json.dumps(name, ensure_ascii=True)


def _iso(column: str) -> str:
    """SQL of a ``timestamptz`` column as the text ``metalab._internal._time.to_iso``
    writes (UTC, microseconds, ``Z``): made by the server, it costs the client
    nothing per row (``to_iso`` took 2 us a row: 20 ms of a 10,000-run answer)."""
    return (f"to_char({column} AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")


def _as_arrays(sub: str, n: int) -> str:
    """One row over the ordered SELECT ``sub`` (columns ``c0`` .. ``c{n-1}``): its row
    count, then each column as the text of one JSON array (the aggregates read
    the subquery's rows in its order)."""
    aggs = ["count(*)"] + [f"coalesce(json_agg(t.c{i}), '[]')::text" for i in range(n)]
    return f"SELECT {', '.join(aggs)} FROM ({sub}) t"


def from_micros(us: int) -> datetime:
    """The instant ``us`` µs after the epoch (UTC), as PostgreSQL takes a ``timestamptz``."""
    return _EPOCH + timedelta(microseconds=us)


class _Acc:
    """How to test and read one field in SQL (text with ``%s`` placeholders + args).

    ``numbers`` (metrics and derived values): the JSON texts ``"Infinity"``,
    ``"-Infinity"`` and ``"NaN"`` are numbers, not texts; the number value
    of ``"NaN"`` is NULL (see :meth:`value`), so comparisons are wrapped in
    ``COALESCE`` with their answer for NaN (true for ``!=`` only, as in Python).
    """

    def __init__(self, kind: str, sql: str, args: list[Any], column: str = "",
                 numbers: bool = False) -> None:
        self.kind = kind  # "json", "string", "time", "number", "tags"
        self.sql = sql
        self.args = args
        self.column = column  # the JSONB column of a params/metrics field
        self.numbers = numbers

    def test(self, k: str) -> tuple[str, list[Any]] | None:
        v, a = self.sql, self.args
        if self.kind == "json":
            if self.numbers and k == "number":
                return (f"(jsonb_typeof({v}) = 'number' OR ({v}) IN {_NON_FINITE})",
                        list(a) + list(a))
            if self.numbers and k == "string":
                return (f"(jsonb_typeof({v}) = 'string' AND ({v}) NOT IN {_NON_FINITE})",
                        list(a) + list(a))
            return f"jsonb_typeof({v}) = '{_JSON_TYPE[k]}'", list(a)
        if self.kind == "string":
            return (f"{v} IS NOT NULL", list(a)) if k == "string" else None
        if self.kind in ("time", "number"):
            return (f"{v} IS NOT NULL", list(a)) if k == "number" else None
        return None

    def value(self, k: str, order: bool = False) -> tuple[str, list[Any]]:
        """SQL of the value as kind ``k`` (only valid where ``test(k)`` holds).

        A stored ``"NaN"`` of a ``numbers`` field is NULL, or NaN for ``order``
        (PostgreSQL orders NaN after every number, as the scan does).
        """
        v, a = self.sql, list(self.args)
        if self.kind == "json":
            if k == "number" and self.numbers:
                text = f"(({v}) #>> '{{{{}}}}')::float8"
                return (f"(CASE jsonb_typeof({v}) WHEN 'number' THEN ({v})::float8 "
                        f"ELSE {text if order else f'NULLIF({text}, {_NAN_SQL})'} END)",
                        a + a + a)
            if k == "number":
                return f"({v})::float8", a
            if k == "string":
                return f'(({v}) #>> \'{{{{}}}}\') COLLATE "C"', a
            return f"({v})::boolean", a
        if self.kind == "string":
            return f'({v}) COLLATE "C"', a
        return v, a


#: top-level string columns declared NOT NULL (compared without a NULL test)
_NOT_NULL_STRINGS = frozenset({"r.run_id", "r.experiment_id"})
_JSON_TYPE = {"number": "number", "string": "string", "boolean": "boolean"}
_NAN_SQL = "'NaN'::float8"


def _subset(source: str, names: list[str] | None) -> tuple[str, list[Any]]:
    """SQL of the JSON object ``source`` reduced to ``names`` (None: all of it)."""
    if names is None:
        return source, []
    parts: list[str] = []
    args: list[Any] = []
    for i in range(0, len(names), 40):  # a function takes at most 100 arguments
        chunk = names[i:i + 40]
        parts.append("jsonb_build_object(" + ", ".join([f"%s::text, {source} -> %s"] * len(chunk)) + ")")
        for name in chunk:
            args += [name, name]
    return " || ".join(parts), args


class PgCompiler:
    """Builds the SELECT of one query (call :meth:`select`)."""

    def __init__(self, cutoff: int,
                 indexed: frozenset[tuple[str, str]] | None = None) -> None:
        """``indexed``: the ``(namespace, name)`` of the params/metrics fields that
        have an expression index (``PostgresIndex.create_field_index``); a top
        level numeric comparison on any other field is sent as the JSON path
        test alone.  None (unknown): every such comparison is sent in both forms.
        """
        self.cutoff = cutoff
        self.indexed = indexed

    # ------------------------------------------------------------ fields
    def acc(self, field: Field) -> _Acc:
        ns = field.ns
        if ns in ("params", "metrics"):
            return _Acc("json", f"r.{ns} -> %s", [field.name], column=f"r.{ns}",
                        numbers=ns == "metrics")
        if ns == "derived":
            return _Acc("json", 'd."values" -> %s', [field.name], numbers=True)
        if ns == "status":
            return _Acc("string", lost_status_sql("r.status", stamp_sql("r.heartbeat"), "%s"),
                        [TIME_RE, from_micros(self.cutoff)])
        if ns in ("started_at", "finished_at"):
            return _Acc("time", f"r.{ns}", [])
        if ns == "duration_ms":
            return _Acc("number", "r.duration_ms", [])
        if ns == "tags":
            return _Acc("tags", "r.tags", [])
        return _Acc("string", f"r.{ns}", [])  # run_id, experiment_id

    def _bind(self, acc: _Acc, lit: Any) -> Any:
        if acc.kind == "time":
            return from_micros(lit)
        if kind_of(lit) == "number":
            return as_float(lit)
        return lit

    def _cmp(self, acc: _Acc, op: str, lit: Any, top: bool = False) -> tuple[str, list[Any]]:
        k = kind_of(lit)
        number = as_float(lit) if k == "number" else math.nan
        if (top and k == "number" and op != "!=" and acc.kind == "json" and acc.column
                and math.isfinite(number)):
            # a conjunct of the whole filter, as a strict JSON path test: the
            # server evaluates it in one pass over the object (about a third
            # cheaper per row than the plain form on a full scan); strict mode
            # makes a missing key or a non-number an (ignored) error, i.e. no
            # match, which drops the row as false does.  The number is written
            # into the path (a bound parameter, like the whole path; an integer
            # exactly): 3 % cheaper than a path variable.  (Infinite or NaN
            # numbers take the form below.)
            operand = repr(lit if type(lit) is int else number)
            key = _json_key(acc.args[0])
            path = f"strict $.{key} {_PATH_OP[op]} {operand}"
            if acc.numbers and op in _PATH_INFINITY:  # a stored "Infinity" / "-Infinity"
                path += f" || $.{key} == {_PATH_INFINITY[op]}"
            match = f"jsonb_path_match({acc.column}, %s::jsonpath, '{{{{}}}}', true)"
            margs = [path]
            if self.indexed is not None and (acc.column[2:], acc.args[0]) not in self.indexed:
                return match, margs  # (no index to match: the plain form would cost 4 %)
            # (the float form only narrows the rows for an index, never past the
            # exact path test: x < n implies float(x) <= float(n), so < and > are
            # sent as <= and >=; integers beyond 2^53 round)
            loose = {"<": "<=", ">": ">="}.get(op, op)
            number_form = number_sql(acc.column, "%s", acc.numbers)
            return (f"({match} AND {number_form} {loose} %s)",
                    [*margs, *acc.args * number_form.count("%s"), number])
        if acc.kind == "string" and k == "string" and acc.sql in _NOT_NULL_STRINGS:
            # (never NULL: the bare comparison, which an index on the column serves)
            return f'{acc.sql} COLLATE "C" {"<>" if op == "!=" else op} %s', [lit]
        test = acc.test(k)
        if test is None or (k == "boolean" and op not in ("=", "!=")):
            return "false", []
        value, vargs = acc.value(k)
        sql_op = "<>" if op == "!=" else op
        compared = f"{value} {sql_op} %s"
        if acc.numbers and k == "number":  # (a stored NaN: NULL; unequal to every number)
            compared = f"COALESCE({compared}, {'true' if op == '!=' else 'false'})"
        return (
            f"(CASE WHEN {test[0]} THEN {compared} ELSE false END)",
            test[1] + vargs + [self._bind(acc, lit)],
        )

    # ------------------------------------------------------------ filter
    def where(self, node: Node, top: bool = False) -> tuple[str, list[Any]]:
        """SQL of ``node``; ``top``: the node is a conjunct of the whole filter.

        One Python stack frame per tree level (PostgreSQL flattens long
        ``and`` / ``or`` chains itself)."""
        if isinstance(node, TrueNode):
            return "true", []
        if isinstance(node, And | Or):
            subs: list[str] = []
            sub_args: list[Any] = []
            for n in node.items:
                sub, item_args = self.where(n, top and isinstance(node, And))
                subs.append(sub)
                sub_args += item_args
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(subs) + ")", sub_args
        if isinstance(node, Not):
            inner, args = self.where(node.item)
            return f"(NOT {inner})", args
        acc = self.acc(node.field)  # type: ignore[attr-defined]
        if isinstance(node, Compare):
            return self._cmp(acc, node.op, node.value, top)
        if isinstance(node, Between):
            lo, lo_args = self._cmp(acc, ">=", node.low, top)
            hi, hi_args = self._cmp(acc, "<=", node.high, top)
            return f"({lo} AND {hi})", lo_args + hi_args
        if isinstance(node, In):
            groups: dict[str, list[Any]] = {}
            for v in node.values:
                groups.setdefault(kind_of(v), []).append(v)
            parts: list[str] = []
            args = []
            for k, values in groups.items():
                test = acc.test(k)
                if test is None:
                    continue
                value, vargs = acc.value(k)
                hit_k = f"{value} = ANY(%s)"
                if acc.numbers and k == "number":  # (a stored NaN: NULL, no member)
                    hit_k = f"COALESCE({hit_k}, false)"
                parts.append(f"(CASE WHEN {test[0]} THEN {hit_k} ELSE false END)")
                args += test[1] + vargs + [[self._bind(acc, v) for v in values]]
            hit = "(" + " OR ".join(parts) + ")" if parts else "false"
            if not node.negate:
                return hit, args
            tests = [t for t in (acc.test(k) for k in _JSON_TYPE) if t is not None]
            scalar = "(" + " OR ".join(t for t, _ in tests) + ")" if tests else "false"
            sargs = [a for _, targs in tests for a in targs]
            return f"(COALESCE({scalar}, false) AND NOT {hit})", sargs + args
        if isinstance(node, StartsWith):
            test = acc.test("string")
            if test is None:
                return "false", []
            value, vargs = acc.value("string")
            return (
                f"(CASE WHEN {test[0]} THEN starts_with({value}, %s) ELSE false END)",
                test[1] + vargs + [node.prefix],
            )
        if isinstance(node, Contains):
            return self._contains(acc, node.value)
        if isinstance(node, IsNull):
            v, a = acc.sql, list(acc.args)
            if acc.kind == "json":
                expr = f"COALESCE(jsonb_typeof({v}), 'null') = 'null'"
            else:
                expr = f"({v}) IS NULL"
            return (f"(NOT {expr})" if node.negate else f"({expr})"), a
        raise TypeError(f"unknown query node {node!r}")

    def _contains(self, acc: _Acc, lit: Any) -> tuple[str, list[Any]]:
        from psycopg.types.json import Jsonb

        v, a = acc.sql, list(acc.args)
        if acc.kind == "tags":
            return f"(%s = ANY({v}))", [lit]
        if acc.kind == "string":
            return f"(CASE WHEN {v} IS NOT NULL THEN strpos({v}, %s) > 0 ELSE false END)", a + a + [lit]
        if acc.kind != "json":
            return "false", []
        elem = Jsonb([lit])
        if isinstance(lit, str):
            # (a metrics / derived "Infinity" ... is a number, not a text)
            text = f"({v}) NOT IN {_NON_FINITE} AND " if acc.numbers else ""
            return (
                f"(CASE jsonb_typeof({v}) WHEN 'string' THEN {text}"
                f"strpos(({v}) #>> '{{{{}}}}', %s) > 0 "
                f"WHEN 'array' THEN ({v}) @> %s ELSE false END)",
                a + (a if acc.numbers else []) + a + [lit] + a + [elem],
            )
        return f"(CASE WHEN jsonb_typeof({v}) = 'array' THEN ({v}) @> %s ELSE false END)", a + a + [elem]

    # ------------------------------------------------------------ order
    def order(self, query: Query, experiment_id: str | None = None) -> tuple[str, list[Any]]:
        """``ORDER BY`` SQL of ``query`` (ties by experiment id, then run id, bytewise).

        With ``experiment_id`` (one experiment in scope) its id is left out of
        the ties: the runs then come in the order of the index on
        ``(experiment_id, run_id COLLATE "C")``, which serves a first page or a
        keyset page (``run_id > ...``) without sorting every matching run.
        """
        parts: list[str] = []
        args: list[Any] = []
        for field, desc in query.order:
            acc = self.acc(field)
            direction = " DESC" if desc else ""
            v, a = acc.sql, acc.args
            if acc.kind == "json":
                if acc.numbers:  # ("Infinity", "-Infinity", "NaN" are numbers)
                    parts.append(
                        f"(CASE WHEN ({v}) IN {_NON_FINITE} THEN 0 ELSE "
                        f"(CASE jsonb_typeof({v}) WHEN 'number' THEN 0 WHEN 'string' THEN 1 "
                        "WHEN 'boolean' THEN 2 ELSE 3 END) END)"
                    )
                    args += a + a
                else:
                    parts.append(
                        f"(CASE jsonb_typeof({v}) WHEN 'number' THEN 0 WHEN 'string' THEN 1 "
                        "WHEN 'boolean' THEN 2 ELSE 3 END)"
                    )
                    args += a
                for k in ("number", "string", "boolean"):
                    test = acc.test(k)
                    assert test is not None
                    value, vargs = acc.value(k, order=True)
                    parts.append(f"(CASE WHEN {test[0]} THEN {value} END){direction}")
                    args += test[1] + vargs
            else:
                parts.append(f"(CASE WHEN {v} IS NULL THEN 3 ELSE 0 END)")
                args += a
                value, vargs = acc.value("string" if acc.kind == "string" else "number")
                parts.append(f"{value}{direction}")
                args += vargs
        if experiment_id is None:
            parts.append('r.experiment_id COLLATE "C"')
        parts.append('r.run_id COLLATE "C"')
        return ", ".join(parts), args

    # ------------------------------------------------------------ columns
    def table(
        self,
        query: Query,
        experiment_id: str | None,
        fixed: list[str],
        fields: list[tuple[str, str]],
    ) -> tuple[str, list[Any]]:
        """One row: the run count, then one JSON array text per column, rows in order.

        ``fixed``: top-level fields (``run_id``, ``status``, ``started_at``,
        ...); ``fields``: ``(namespace, name)`` of params / metrics / derived
        values (JSON ``null`` where a run lacks it; an empty name: the whole
        object, ``null`` for a run without derived values).  Without an ``order_by``
        the rows come in the order of :class:`~metalab.analysis.Results`
        (start time, never-started last, then run id).  One aggregate per
        column over an ordered subquery: the server sends a few long texts
        that decode in one ``orjson.loads`` each, instead of one row per run.
        """
        inner: list[str] = []
        args: list[Any] = []
        for name in fixed:
            acc = self.acc(Field(name))
            inner.append(f"{acc.sql} AS c{len(inner)}")
            args += acc.args
        for ns, name in fields:
            source = 'd."values"' if ns == "derived" else f"r.{ns}"
            if not name:  # the whole object (cheaper to send than many single values)
                inner.append(f"{source} AS c{len(inner)}")
                continue
            inner.append(f"{source} -> %s AS c{len(inner)}")
            args.append(name)
        where, wargs = self.where(without_nan(query.where), top=True)
        if query.order:
            order, oargs = self.order(query, experiment_id)
        else:
            # (one experiment: its id is left out, so the rows come in the
            # order of the index on (experiment_id, started_at, run_id), unsorted)
            order = 'r.started_at NULLS LAST, r.run_id COLLATE "C"' + (
                "" if experiment_id else ', r.experiment_id COLLATE "C"')
            oargs = []
        join = (
            " LEFT JOIN {s}.derived d ON d.experiment_id = r.experiment_id AND d.run_id = r.run_id"
            if query.uses_derived or any(ns == "derived" for ns, _ in fields) else ""
        )
        scope, sargs = ("r.experiment_id = %s AND ", [experiment_id]) if experiment_id else ("", [])
        sub = (f"SELECT {', '.join(inner) or '1 AS c'} FROM {{s}}.runs r{join} "
               f"WHERE {scope}{where} ORDER BY {order}")
        all_args = args + sargs + wargs + oargs
        if query.limit is not None:
            sub += " LIMIT %s"
            all_args.append(query.limit)
        return _as_arrays(sub, len(inner)), all_args

    # ------------------------------------------------------------ select
    def select(self, query: Query, experiment_id: str | None, *, columnar: bool = False
               ) -> tuple[str, list[Any], list[tuple[str, str, str, int]]]:
        """(SQL template with ``{s}`` for the schema, args, plan of the projected columns).

        The plan has one ``(kind, ns, name, select index)`` per requested column
        (times come as ISO texts, see :func:`_iso`);
        params/metrics/derived columns read one JSON object per namespace and
        row holding only the requested keys (a bare ``params`` column: the
        whole object), so only the requested values travel.  ``columnar``
        (a projected query only): one row instead, the run count and then one
        JSON array text per selected column, runs in order (the select index
        of the plan is then the position among the arrays).
        """
        cols: list[str] = []
        args: list[Any] = []
        plan: list[tuple[str, str, str, int]] = []
        if query.columns is None:
            cols.append("m.record")
        else:
            status = self.acc(Field("status"))
            cols += ["r.run_id", "r.experiment_id", status.sql, _iso("r.started_at")]
            args += status.args
            wanted: dict[str, list[str] | None] = {}  # None: the whole object
            for f in query.columns:
                if f.ns in ("params", "metrics", "derived"):
                    names = wanted.setdefault(f.ns, [])
                    if not f.name:
                        wanted[f.ns] = None
                    elif names is not None and f.name not in names:
                        names.append(f.name)
            ns_index: dict[str, int] = {}
            for f in query.columns:
                if f.ns in ("params", "metrics", "derived"):
                    if f.ns not in ns_index:
                        ns_index[f.ns] = len(cols)
                        source = 'd."values"' if f.ns == "derived" else f"r.{f.ns}"
                        part, part_args = _subset(source, wanted[f.ns])
                        cols.append(part)
                        args += part_args
                    plan.append(("map" if not f.name else "value", f.ns, f.name, ns_index[f.ns]))
                elif f.ns != "status":
                    acc = self.acc(f)
                    plan.append((acc.kind, f.ns, "", len(cols)))
                    cols.append(_iso(acc.sql) if acc.kind == "time" else acc.sql)
                    args += acc.args
        where, wargs = self.where(without_nan(query.where), top=True)
        order, oargs = self.order(query, experiment_id)
        uses_derived = query.uses_derived
        # whole documents come from run_records; a projection reads runs only
        records = (
            " JOIN {s}.run_records m ON m.experiment_id = r.experiment_id AND m.run_id = r.run_id"
            if query.columns is None else ""
        )
        join = (
            " LEFT JOIN {s}.derived d ON d.experiment_id = r.experiment_id AND d.run_id = r.run_id"
            if uses_derived else ""
        )
        scope = ""
        sargs: list[Any] = []
        if experiment_id is not None:
            scope = "r.experiment_id = %s AND "
            sargs = [experiment_id]
        if columnar:
            cols = [f"{c} AS c{i}" for i, c in enumerate(cols)]
        sql = f"SELECT {', '.join(cols)} FROM {{s}}.runs r{records}{join} WHERE {scope}{where} ORDER BY {order}"
        all_args = args + sargs + wargs + oargs
        if query.limit is not None:
            sql += " LIMIT %s"
            all_args.append(query.limit)
        if columnar:
            sql = _as_arrays(sql, len(cols))
        return sql, all_args, plan
