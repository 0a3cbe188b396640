"""Compile a :class:`Query` to SQLite over the FileStore catalog tables.

Every value is a bound parameter (``?N``); the only identifiers written into
the SQL are the catalog's own generated column names (``f12`` / ``g3``, checked
against a strict pattern), never a user-given name.  The numbers and strings
of an ``in`` list are one parameter, a JSON array read with ``json_each`` (a
parameter each made a 50,000-value list take seconds to prepare).  Long
``and`` / ``or`` chains are written as balanced trees of parentheses: SQLite
refuses expressions more than 1,000 levels deep.

Cell encoding (see :func:`encode`): numbers as INTEGER/REAL, strings as
TEXT, booleans as a one-byte BLOB, lists and objects as a BLOB ``b"J" +
JSON``, null and missing as NULL.  A metrics or derived value stored as the
text ``"Infinity"`` / ``"-Infinity"`` is that REAL (it is a number, see
:mod:`metalab._internal._json`), one stored as ``"NaN"`` the BLOB ``b"NaN"``
(:data:`NAN`; SQLite would store a NaN REAL as NULL): it is a number that
every comparison but ``!=`` finds false (as in Python), not null, ordered
after ``+inf``.  Every atomic predicate is written so it is
never NULL (a type test guards each comparison), so ``NOT`` is plain
negation, as in the in-memory engine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from metalab._internal._json import dumps, loads
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
)
from metalab.query._liveness import lost_status_sql

__all__ = ["COLUMN_RE", "NAN", "SqliteCompiler", "decode", "encode"]

COLUMN_RE = re.compile(r"^[fg][0-9]{1,6}$")
_TRUE, _FALSE = b"\x01", b"\x00"
#: the cell of a NaN metrics / derived value (decodes to its stored text "NaN")
NAN = b"NaN"
#: SQL: the cell ``{c}`` is a NaN (0 or 1, never NULL)
_IS_NAN = "{c} IS X'4E614E'"
_INT64 = 2**63


def encode(value: Any) -> Any:
    """A JSON value as a catalog cell."""
    if value is None:
        return None
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else as_float(value)
    if isinstance(value, float | str):
        return value
    return b"J" + dumps(value)


def decode(cell: Any) -> Any:
    """A cell as the stored JSON value (a NaN cell: the text ``"NaN"``)."""
    if isinstance(cell, bytes):
        if cell == _TRUE:
            return True
        if cell == _FALSE:
            return False
        if cell == NAN:
            return "NaN"
        return loads(cell[1:])
    return cell


def _lit(value: Any) -> Any:
    if value is True or value is False:
        return _TRUE if value else _FALSE
    return encode(value)


_KIND_TEST = {
    "number": "typeof({c}) IN ('integer','real')",
    "string": "typeof({c}) = 'text'",
    "boolean": "(typeof({c}) = 'blob' AND length({c}) = 1)",
}
_RANK = (
    "(CASE WHEN typeof({c}) IN ('integer','real') OR {c} IS X'4E614E' THEN 0 "
    "WHEN typeof({c}) = 'text' THEN 1 "
    "WHEN typeof({c}) = 'blob' AND length({c}) = 1 THEN 2 ELSE 3 END)"
)
_JSON_KIND = {
    "number": "j.type IN ('integer','real')",
    "string": "j.type = 'text'",
}


def _balanced(parts: list[str], joiner: str) -> str:
    """``parts`` joined by ``joiner`` as a balanced tree of parentheses (depth log2 n),
    to be put in parentheses by the caller."""
    if not parts:
        return "1" if joiner == " AND " else "0"
    while len(parts) > 2:
        paired = [f"({parts[i]}{joiner}{parts[i + 1]})" for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return joiner.join(parts)


def _as_json_list(cells: list[Any]) -> tuple[str, list[Any]]:
    """(JSON array text of the cells ``json_each`` reads back unchanged, the other cells).

    Finite numbers within 64 bits and strings without NUL go into the array
    (``json_each`` ends a text at NUL; JSON has no infinity); the rest are
    bound one by one.
    """
    listed: list[Any] = []
    single: list[Any] = []
    for cell in cells:
        ok = (isinstance(cell, str) and "\0" not in cell) or (
            isinstance(cell, float) and math.isfinite(cell)) or isinstance(cell, int)
        (listed if ok else single).append(cell)
    return json.dumps(listed, ensure_ascii=False, allow_nan=False), single


class SqliteCompiler:
    """Builds the SELECT of one query.

    ``column_of(field)`` returns the SQL expression of a params/metrics/
    derived field (``"r.f3"``, ``"d.g1"``) or ``None`` when no run has it.
    """

    def __init__(self, column_of: Callable[[Field], str | None], cutoff: int) -> None:
        self.column_of = column_of
        self.cutoff = cutoff
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        """The placeholder of a new parameter, ``?N`` (numbered: SQLite looks a
        named one up among the earlier names, quadratic in their count)."""
        self.params.append(value)
        return f"?{len(self.params)}"

    def expr(self, field: Field) -> str:
        ns = field.ns
        if ns in ("params", "metrics", "derived"):
            col = self.column_of(field)
            return col if col is not None else "NULL"
        if ns == "status":
            return lost_status_sql("r.status", "r.hb", self.bind(self.cutoff))
        if ns == "started_at":
            return "r.started_us"
        if ns == "finished_at":
            return "r.finished_us"
        return {"run_id": "r.run_id", "experiment_id": "r.experiment_id",
                "duration_ms": "r.duration_ms", "tags": "r.tags"}[ns]

    def _cmp(self, c: str, op: str, lit: Any) -> str:
        kind = kind_of(lit)
        if kind == "boolean" and op not in ("=", "!="):
            return "0"
        test = _KIND_TEST[kind].format(c=c)
        if op == "!=" and kind == "number":  # (NaN is unequal to every number)
            return f"(({test} AND {c} != {self.bind(_lit(lit))}) OR {_IS_NAN.format(c=c)})"
        return f"({test} AND {c} {op} {self.bind(_lit(lit))})"

    def where(self, node: Node) -> str:
        """SQL of a filter (never NULL); one Python stack frame per tree level."""
        if isinstance(node, TrueNode):
            return "1"
        if isinstance(node, And | Or):
            parts = []
            for n in node.items:
                parts.append(self.where(n))
            return "(" + _balanced(parts, " AND " if isinstance(node, And) else " OR ") + ")"
        if isinstance(node, Not):
            return f"(NOT {self.where(node.item)})"
        c = self.expr(node.field)  # type: ignore[attr-defined]
        if isinstance(node, Compare):
            return self._cmp(c, node.op, node.value)
        if isinstance(node, Between):
            return f"({self._cmp(c, '>=', node.low)} AND {self._cmp(c, '<=', node.high)})"
        if isinstance(node, In):
            groups: dict[str, dict[Any, None]] = {}
            for v in node.values:
                if v == v:  # (NaN equals nothing: in the scan it matches no run)
                    groups.setdefault(kind_of(v), {})[_lit(v)] = None
            parts = []
            for kind, cells in groups.items():
                listed, single = _as_json_list(list(cells))
                tests = []
                if listed != "[]":
                    tests.append(f"{c} IN (SELECT value FROM json_each({self.bind(listed)}))")
                if single:
                    tests.append(f"{c} IN ({', '.join(self.bind(cell) for cell in single)})")
                parts.append(f"({_KIND_TEST[kind].format(c=c)} AND ({' OR '.join(tests)}))")
            hit = "(" + " OR ".join(parts) + ")" if parts else "0"
            if not node.negate:
                return hit
            scalar = "(" + " OR ".join([*(_KIND_TEST[k].format(c=c) for k in _KIND_TEST),
                                        _IS_NAN.format(c=c)]) + ")"
            return f"({scalar} AND NOT {hit})"
        if isinstance(node, StartsWith):
            p = self.bind(node.prefix)
            return f"(typeof({c}) = 'text' AND substr({c}, 1, length({p})) = {p})"
        if isinstance(node, Contains):
            lit = node.value
            if node.field.ns == "tags":
                p = self.bind(lit)
                return f"EXISTS (SELECT 1 FROM json_each({c}) j WHERE j.type = 'text' AND j.value = {p})"
            kind = kind_of(lit)
            if kind == "boolean":
                elem = "j.type = 'true'" if lit else "j.type = 'false'"
            else:
                elem = f"{_JSON_KIND[kind]} AND j.value = {self.bind(lit)}"
            in_list = (
                f"(typeof({c}) = 'blob' AND length({c}) > 1 AND substr({c}, 1, 2) = X'4A5B' AND "
                f"EXISTS (SELECT 1 FROM json_each(CAST(substr({c}, 2) AS TEXT)) j WHERE {elem}))"
            )
            if kind == "string":
                return f"((typeof({c}) = 'text' AND instr({c}, {self.bind(lit)}) > 0) OR {in_list})"
            return in_list
        if isinstance(node, IsNull):
            return f"({c} IS NOT NULL)" if node.negate else f"({c} IS NULL)"
        raise TypeError(f"unknown query node {node!r}")

    def order(self, query: Query) -> str:
        parts: list[str] = []
        for field, desc in query.order:
            c = self.expr(field)
            rank = _RANK.format(c=c)
            parts.append(rank)
            parts.append(f"(CASE WHEN {rank} < 3 THEN {c} END){' DESC' if desc else ''}")
        parts += ["r.experiment_id", "r.run_id"]
        return ", ".join(parts)
