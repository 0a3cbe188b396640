"""The run query AST, the typed value model shared by every engine, and field checks.

A query has a filter (a tree of the nodes below), an optional projection
(``columns``), an ordering and a limit (:class:`Query`).  The same AST is
evaluated in memory (:mod:`._eval`), compiled to SQLite
(:mod:`metalab.store._index._sqlite`) and to PostgreSQL
(:mod:`metalab.store._index._pgsql`); all three follow the rules written here.

Value model (identical in every engine):

* A field's value has one *kind*: ``number`` (int or float, never a bool),
  ``string``, ``boolean``, ``null`` (missing or JSON null) or ``other``
  (list or object).
* A comparison (``= != < <= > >=``, ``in``, ``between``) is true only when
  the value and the literal have the same kind; otherwise it is false, also
  for ``!=`` and ``not in`` (``params.x != 1`` is false for a run whose ``x``
  is ``"a"`` or missing).  Numbers compare numerically (``1 = 1.0``), strings
  by code point, booleans only with ``=`` / ``!=``.
* ``not`` is plain boolean negation: ``not params.x = 1`` is true for every
  run where ``params.x = 1`` is false, including runs without ``x``.
* ``started_at`` / ``finished_at`` are instants: literals are ISO 8601 strings
  (a value without zone is UTC) and compare chronologically.
* ``status`` is the status a reader sees: a ``running`` run whose heartbeat
  (or start) is older than the lost-after limit is ``lost``.
* Ordering: within one field, numbers (and instants) first, then strings,
  then booleans, then runs without a value; ``desc`` reverses the order of
  values inside each kind only.  Ties are broken by experiment id then run id
  (ascending, by code point).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from metalab._errors import QueryError, UnknownFieldError

__all__ = [
    "DYNAMIC",
    "FALSE",
    "FIXED",
    "MAX_NESTING",
    "MAX_NODE_DEPTH",
    "And",
    "Between",
    "Compare",
    "Contains",
    "Field",
    "In",
    "IsNull",
    "Node",
    "Not",
    "Or",
    "Query",
    "StartsWith",
    "TrueNode",
    "as_float",
    "check_depth",
    "check_fields",
    "fields_of",
    "kind_of",
    "to_micros",
    "without_nan",
]

#: namespaces whose members are user-defined names
DYNAMIC = ("params", "metrics", "derived")
#: top-level fields and their kind ("time" = an instant, "tags" = list of strings)
FIXED: dict[str, str] = {
    "run_id": "string",
    "experiment_id": "string",
    "status": "string",
    "started_at": "time",
    "finished_at": "time",
    "duration_ms": "number",
    "tags": "tags",
}
NAMESPACE_ALIASES = {"param": "params", "metric": "metrics"}
#: how many levels of parentheses and ``not`` a filter text may nest
MAX_NESTING = 100
#: how deep a filter tree (And / Or / Not above a predicate) may be: every tree
#: parsed from text fits (each text level adds at most an Or and an And node),
#: and every engine walks this deep well within Python's recursion limit
MAX_NODE_DEPTH = 2 * MAX_NESTING + 8

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def kind_of(value: Any) -> str:
    """The kind of a JSON value (see the module docstring)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def to_micros(dt: datetime) -> int:
    """Microseconds since the epoch (exact integer arithmetic)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclasses.dataclass(frozen=True)
class Field:
    """A field: ``ns`` is a namespace (params/metrics/derived) or a top-level field name."""

    ns: str
    name: str = ""
    pos: int | None = dataclasses.field(default=None, compare=False)

    @property
    def path(self) -> str:
        return f"{self.ns}.{self.name}" if self.name else self.ns

    @property
    def kind(self) -> str:
        """The fixed kind of a top-level field, ``"any"`` for params/metrics/derived."""
        return FIXED.get(self.ns, "any") if not self.name else "any"

    @property
    def whole_namespace(self) -> bool:
        return self.ns in DYNAMIC and not self.name


class Node:
    """Base of the filter nodes (immutable, compared by value)."""


@dataclasses.dataclass(frozen=True)
class TrueNode(Node):
    """Matches every run (the empty filter)."""


@dataclasses.dataclass(frozen=True)
class Compare(Node):
    field: Field
    op: str  # = != < <= > >=
    value: Any


@dataclasses.dataclass(frozen=True)
class In(Node):
    field: Field
    values: tuple[Any, ...]
    negate: bool = False


@dataclasses.dataclass(frozen=True)
class Between(Node):
    field: Field
    low: Any
    high: Any


@dataclasses.dataclass(frozen=True)
class StartsWith(Node):
    field: Field
    prefix: str


@dataclasses.dataclass(frozen=True)
class Contains(Node):
    field: Field
    value: Any


@dataclasses.dataclass(frozen=True)
class IsNull(Node):
    field: Field
    negate: bool = False


@dataclasses.dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]


@dataclasses.dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclasses.dataclass(frozen=True)
class Not(Node):
    item: Node


def check_depth(node: Node, text: str = "") -> Node:
    """Return ``node`` if its tree is at most :data:`MAX_NODE_DEPTH` deep.

    Iterative (safe for any depth). Raises QueryError for a deeper tree.
    """
    stack = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NODE_DEPTH:
            raise QueryError(
                f"the filter nests more than {MAX_NODE_DEPTH} levels deep (and / or / not); "
                "build it with fewer levels, e.g. one And or Or of many items", text,
            )
        if isinstance(item, And | Or):
            stack.extend((sub, depth + 1) for sub in item.items)
        elif isinstance(item, Not):
            stack.append((item.item, depth + 1))
    return node


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked query: filter, projection (None = whole documents), ordering, limit.

    Raises QueryError when built with a filter deeper than :data:`MAX_NODE_DEPTH`.
    """

    where: Node = TrueNode()
    columns: tuple[Field, ...] | None = None
    order: tuple[tuple[Field, bool], ...] = ()  # (field, descending)
    limit: int | None = None
    text: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        check_depth(self.where, self.text)

    def fields(self) -> list[Field]:
        """Every field the query refers to (filter, columns, ordering)."""
        out = fields_of(self.where)
        out += list(self.columns or ())
        out += [f for f, _ in self.order]
        return out

    @property
    def uses_derived(self) -> bool:
        return any(f.ns == "derived" for f in self.fields())


def as_float(value: Any) -> float:
    """A number literal as a float; an integer beyond the float range is infinite
    (it compares with every stored number as infinity does: stored numbers are
    finite floats or integers within 64 bits)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_nan(value: Any) -> bool:
    return type(value) is float and value != value


#: a filter that matches no run (both SQL compilers write ``NOT true`` for it)
FALSE: Node = Not(TrueNode())


def without_nan(node: Node) -> Node:
    """``node`` with no NaN literal, matching the same runs (for the SQL engines).

    In Python (the scan) every comparison with NaN is false except ``!=``,
    while SQLite binds NaN as NULL and PostgreSQL orders it above every
    number.  So ``x != nan`` is ``x != 0 or x = 0`` (x is a number: a stored
    NaN too, which is unequal to 0), and ``=``, ``<``, ..., ``between`` with a
    NaN bound match nothing; NaN drops out of an ``in`` list.  A stored list
    never holds NaN or an infinity (only metrics and derived values that are
    numbers may be non-finite, see :mod:`metalab._internal._json`), so
    ``contains`` of one matches nothing.
    """
    if isinstance(node, And | Or):
        items = []
        for n in node.items:  # (a loop: one stack frame per tree level)
            items.append(without_nan(n))
        return type(node)(tuple(items))
    if isinstance(node, Not):
        return Not(without_nan(node.item))
    if isinstance(node, Compare) and _is_nan(node.value):
        if node.op == "!=":
            return Or((Compare(node.field, "!=", 0), Compare(node.field, "=", 0)))
        return FALSE
    if isinstance(node, Between) and (_is_nan(node.low) or _is_nan(node.high)):
        return FALSE
    if isinstance(node, In) and any(map(_is_nan, node.values)):
        return In(node.field, tuple(v for v in node.values if not _is_nan(v)), node.negate)
    if (isinstance(node, Contains) and kind_of(node.value) == "number"
            and not math.isfinite(as_float(node.value))):
        return FALSE  # (no stored list holds NaN or an infinity)
    return node


def fields_of(node: Node) -> list[Field]:
    """The fields a filter refers to, in order of appearance (iterative)."""
    out: list[Field] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, And | Or):
            stack.extend(reversed(item.items))
        elif isinstance(item, Not):
            stack.append(item.item)
        elif isinstance(field := getattr(item, "field", None), Field):
            out.append(field)
    return out


def check_fields(
    query: Query,
    known: Callable[[], Iterable[str]],
    *,
    any_runs: bool = True,
) -> None:
    """Raise :class:`UnknownFieldError` for a params/metrics/derived name no run has.

    ``known()`` returns the names (``"params.lr"``...) present in the store; it
    is called only if the query names such fields.  A store without runs
    (``any_runs=False``) accepts every name (there is nothing to mistype).
    """
    named = [f for f in query.fields() if f.ns in DYNAMIC and f.name]
    if not named or not any_runs:
        return
    names = set(known())
    for f in named:
        if f.path in names:
            continue
        candidates = sorted(names | set(FIXED))
        close = tuple(difflib.get_close_matches(f.path, candidates, n=3, cutoff=0.6))
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        same_ns = sorted(n for n in names if n.startswith(f.ns + "."))
        listed = ", ".join(same_ns[:20]) + (" ..." if len(same_ns) > 20 else "")
        raise UnknownFieldError(
            f"unknown field {f.path!r}: no run has it.{hint} Known {f.ns}: {listed or 'none'}",
            query.text,
            f.pos,
            field=f.path,
            suggestions=close,
        )


def check_literal(field: Field, value: Any, op: str, query: str, pos: int | None) -> Any:
    """Validate a literal against a fixed-kind field; returns the literal to use.

    Time literals become microsecond instants.  Raises QueryError (with a
    caret) for a literal that can never match the field's kind.
    """
    kind = field.kind
    if value is None:
        raise QueryError(
            f"{field.path} {op} null never matches; use '{field.path} is null'", query, pos
        )
    if kind == "time":
        if not isinstance(value, str):
            raise QueryError(
                f"{field.path} is a time: compare it with an ISO 8601 string such as "
                f"\"2024-05-01T12:00:00Z\", not {value!r}", query, pos,
            )
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"{value!r} is not an ISO 8601 time (e.g. \"2024-05-01\" or "
                "\"2024-05-01T12:00:00Z\")", query, pos,
            ) from None
        return to_micros(dt)
    if kind in ("string", "number") and kind_of(value) != kind:
        raise QueryError(
            f"{field.path} holds a {kind}; {value!r} is a {kind_of(value)} and never matches",
            query, pos,
        )
    return value


def order_key_kind(field: Field) -> None:
    """Ordering is defined for every field but tags."""
    if field.ns == "tags" or field.whole_namespace:
        raise QueryError(f"cannot order by {field.path!r}; order by one field such as params.lr")


def normalize_order(items: Sequence[tuple[Field, bool]]) -> tuple[tuple[Field, bool], ...]:
    for f, _ in items:
        order_key_kind(f)
    return tuple(items)
