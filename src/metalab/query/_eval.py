"""The in-memory engine: evaluate a :class:`Query` over raw run documents.

This is the reference semantics (see :mod:`._ast`); the SQLite and
PostgreSQL compilers must give the same answers.  Pure functions, thread-safe.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from metalab._errors import CorruptRecordError
from metalab._internal._json import decode_number
from metalab._internal._time import to_iso
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
    kind_of,
)
from metalab.query._fields import FieldKey, field_keys, named_fields, require_fields
from metalab.query._liveness import lost_cutoff, parse_time, status_at_cutoff
from metalab.query._records import record_problem, report_problem

__all__ = [
    "DerivedOf",
    "evaluate",
    "micros_to_iso",
    "predicate",
    "project",
    "run_query",
    "sort_documents",
]

DerivedOf = Callable[[dict[str, Any]], dict[str, Any] | None]
Getter = Callable[[dict[str, Any], dict[str, Any] | None], Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RANK = {"number": 0, "string": 1, "boolean": 2}


def micros_to_iso(us: int | None) -> str | None:
    return None if us is None else to_iso(_EPOCH + timedelta(microseconds=us))


def norm_tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [t if isinstance(t, str) else ("" if t is None else str(t)) for t in value]


def norm_number(value: Any) -> Any:
    return value if kind_of(value) == "number" else None


def getter(field: Field, cutoff: int, *, stored: bool = False) -> Getter:
    """A function (doc, derived) -> the field's value (normalised for fixed fields).

    A metrics or derived value stored as ``"Infinity"``, ``"-Infinity"`` or
    ``"NaN"`` is that float (see :mod:`metalab._internal._json`), unless
    ``stored`` (the value as the document holds it, for projections).  A
    whole namespace is always as stored.
    """
    ns, name = field.ns, field.name
    if ns == "derived":
        if not name:
            return lambda d, der: {k: v for k, v in (der or {}).items() if v is not None}
        if stored:
            return lambda d, der: (der or {}).get(name)
        return lambda d, der: decode_number((der or {}).get(name))
    if ns in ("params", "metrics"):
        if not name:
            def whole(d: dict[str, Any], der: Any) -> Any:
                m = d.get(ns)
                return {k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else {}
            return whole

        if ns == "metrics" and not stored:
            def number(d: dict[str, Any], der: Any) -> Any:
                m = d.get(ns)
                return decode_number(m.get(name)) if isinstance(m, dict) else None
            return number

        def dyn(d: dict[str, Any], der: Any) -> Any:
            m = d.get(ns)
            return m.get(name) if isinstance(m, dict) else None
        return dyn
    if ns == "status":
        return lambda d, der: status_at_cutoff(d, cutoff)
    if ns in ("started_at", "finished_at"):
        return lambda d, der: parse_time(d.get(ns))
    if ns == "duration_ms":
        return lambda d, der: norm_number(d.get("duration_ms"))
    if ns == "tags":
        return lambda d, der: norm_tags(d.get("tags"))
    return lambda d, der: (v if isinstance(v := d.get(ns), str) else None)


def _same(value: Any, lit: Any) -> bool:
    k = kind_of(value)
    return k == kind_of(lit) and k in _RANK and bool(value == lit)


def _cmp(op: str, value: Any, lit: Any) -> bool:
    k = kind_of(value)
    if k != kind_of(lit) or k not in _RANK:
        return False
    if op == "=":
        return bool(value == lit)
    if op == "!=":
        return bool(value != lit)
    if k == "boolean":
        return False
    if op == "<":
        return bool(value < lit)
    if op == "<=":
        return bool(value <= lit)
    if op == ">":
        return bool(value > lit)
    return bool(value >= lit)


Pred = Callable[[dict[str, Any], dict[str, Any] | None], bool]


def _members(values: tuple[Any, ...]) -> Callable[[Any], bool]:
    """``v -> v equals one of values`` (same kind, as :func:`_same`), by set lookups.

    Numbers share one set (``1`` and ``1.0`` are equal, with equal hashes);
    NaN never equals, so it is left out (a stored NaN is then no member).
    """
    sets: dict[str, set[Any]] = {"number": set(), "string": set(), "boolean": set()}
    for x in values:
        k = kind_of(x)
        if k in sets and x == x:
            sets[k].add(x)

    def member(v: Any) -> bool:
        found = sets.get(kind_of(v))
        return found is not None and v == v and v in found
    return member


def predicate(node: Node, cutoff: int) -> Pred:
    """Compile a filter to a Python function ``(doc, derived) -> bool``.

    Recursive over the tree, one stack frame per level when compiling and when
    evaluating (trees are at most ``MAX_NODE_DEPTH`` deep, see :class:`Query`).
    """
    if isinstance(node, TrueNode):
        return lambda d, der: True
    if isinstance(node, And | Or):
        parts = []
        for n in node.items:
            parts.append(predicate(n, cutoff))
        # (loops, not all()/any() over a generator: a frame less per level)
        if isinstance(node, And):
            def every(d: dict[str, Any], der: Any) -> bool:
                for p in parts:  # noqa: SIM110
                    if not p(d, der):
                        return False
                return True
            return every

        def some(d: dict[str, Any], der: Any) -> bool:
            for p in parts:  # noqa: SIM110
                if p(d, der):
                    return True
            return False
        return some
    if isinstance(node, Not):
        inner = predicate(node.item, cutoff)
        return lambda d, der: not inner(d, der)
    get = getter(node.field, cutoff)  # type: ignore[attr-defined]
    if isinstance(node, Compare):
        op, lit = node.op, node.value
        return lambda d, der: _cmp(op, get(d, der), lit)
    if isinstance(node, In):
        negate = node.negate
        is_member = _members(node.values)

        def member(d: dict[str, Any], der: Any) -> bool:
            v = get(d, der)
            if kind_of(v) not in _RANK:
                return False
            hit = is_member(v)
            return not hit if negate else hit
        return member
    if isinstance(node, Between):
        lo, hi = node.low, node.high
        return lambda d, der: _cmp(">=", v := get(d, der), lo) and _cmp("<=", v, hi)
    if isinstance(node, StartsWith):
        prefix = node.prefix
        return lambda d, der: isinstance(v := get(d, der), str) and v.startswith(prefix)
    if isinstance(node, Contains):
        lit = node.value

        def contains(d: dict[str, Any], der: Any) -> bool:
            v = get(d, der)
            if isinstance(v, str):
                return isinstance(lit, str) and lit in v
            if isinstance(v, list):
                return any(_same(e, lit) for e in v)
            return False
        return contains
    if isinstance(node, IsNull):
        negate = node.negate
        return lambda d, der: (get(d, der) is None) != negate
    raise TypeError(f"unknown query node {node!r}")


def evaluate(node: Node, doc: dict[str, Any], derived: dict[str, Any] | None = None,
             cutoff: int | None = None) -> bool:
    """Does ``doc`` match ``node``?  (Convenience for single documents.)"""
    return predicate(node, lost_cutoff() if cutoff is None else cutoff)(doc, derived)


def _identity_key(pair: tuple[dict[str, Any], Any]) -> tuple[str, str]:
    eid, rid = pair[0].get("experiment_id"), pair[0].get("run_id")
    return (eid if isinstance(eid, str) else "", rid if isinstance(rid, str) else "")


def _rank_value(value: Any) -> tuple[int, Any]:
    rank = _RANK.get(kind_of(value), 3)
    if rank == 0:  # NaN after every other number (+inf included), as PostgreSQL orders it
        return 0, ((1, 0) if value != value else (0, value))
    return rank, (value if rank < 3 else None)


def sort_documents(
    items: list[tuple[dict[str, Any], dict[str, Any] | None]],
    order: tuple[tuple[Field, bool], ...],
    cutoff: int,
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Sort (doc, derived) pairs by ``order`` then experiment id and run id."""
    getters = [(getter(f, cutoff), desc) for f, desc in order]
    keyed = []
    for doc, der in items:
        keys = [_rank_value(g(doc, der)) for g, _ in getters]
        eid = doc.get("experiment_id")
        rid = doc.get("run_id")
        keyed.append((keys, (eid if isinstance(eid, str) else "", rid if isinstance(rid, str) else ""), doc, der))
    descs = [desc for _, desc in getters]

    def compare(a: Any, b: Any) -> int:
        for (ra, va), (rb, vb), desc in zip(a[0], b[0], descs, strict=True):
            if ra != rb:
                return -1 if ra < rb else 1
            if ra == 3 or va == vb:
                continue
            lower = va < vb
            return (1 if lower else -1) if desc else (-1 if lower else 1)
        if a[1] != b[1]:
            return -1 if a[1] < b[1] else 1
        return 0

    keyed.sort(key=functools.cmp_to_key(compare))
    return [(doc, der) for _, _, doc, der in keyed]


def project(doc: dict[str, Any], derived: dict[str, Any] | None, columns: tuple[Field, ...],
            cutoff: int) -> dict[str, Any]:
    """The projected document: identity fields plus the requested columns.

    Always ``run_id``, ``experiment_id``, ``status`` (as a reader sees it) and
    ``started_at`` (ISO, UTC); params/metrics/derived columns go into nested
    dicts (present when any of their columns was asked for), with the values
    as the documents hold them; missing and null values are left out.
    """
    out: dict[str, Any] = {
        "run_id": doc.get("run_id"),
        "experiment_id": doc.get("experiment_id"),
        "status": status_at_cutoff(doc, cutoff),
        "started_at": micros_to_iso(parse_time(doc.get("started_at"))),
    }
    for f in columns:
        if f.ns in ("params", "metrics", "derived"):
            bucket = out.setdefault(f.ns, {})
            if not f.name:
                bucket.update(getter(f, cutoff)(doc, derived))
            else:
                v = getter(f, cutoff, stored=True)(doc, derived)
                if v is not None:
                    bucket[f.name] = v
        elif f.ns in ("started_at", "finished_at"):
            out[f.ns] = micros_to_iso(parse_time(doc.get(f.ns)))
        elif f.ns == "status":
            continue
        else:
            out[f.ns] = getter(f, cutoff)(doc, derived)
    return out


def _named_by_ids(doc: Any) -> str:
    """How a skipped document is named when its file is unknown."""
    if type(doc) is not dict:
        return f"of type {type(doc).__name__}"
    return f"(run_id {doc.get('run_id')!r}, experiment_id {doc.get('experiment_id')!r})"


def run_query(
    docs: Iterable[dict[str, Any]],
    query: Query,
    derived_of: DerivedOf | None = None,
    cutoff: int | None = None,
    *,
    check: bool = True,
    source_of: Callable[[dict[str, Any]], str] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``query`` over documents: filter, order, limit, project.

    ``derived_of(doc)`` gives a run's derived values (called only when the
    query uses derived fields).  Unknown fields raise UnknownFieldError
    (``check``).  A document that is not a run record (see
    :func:`~metalab.query.record_problem`) is skipped and reported
    (:func:`~metalab.query.report_problem`), named by
    ``source_of(doc)`` (its file) or else by its ids.
    """

    cut = lost_cutoff() if cutoff is None else cutoff
    pred = predicate(query.where, cut)
    need_derived = query.uses_derived and derived_of is not None
    # one streaming pass: keep only the hits, note which fields exist
    names_needed = check and bool(named_fields(query))
    keys: set[FieldKey] = set()
    any_runs = False
    hits: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for d in docs:
        why = record_problem(d)
        if why is not None:
            source = (source_of or _named_by_ids)(d)
            report_problem(CorruptRecordError(f"run record {source} {why}; it was skipped",
                                              source if source_of else None))
            continue
        any_runs = True
        der = derived_of(d) if need_derived and derived_of else None
        if names_needed:
            keys |= field_keys(d, der)
        if pred(d, der):
            hits.append((d, der))
    if check:
        require_fields(query, lambda wanted: keys.intersection(wanted), lambda _: keys,
                       lambda: any_runs)
    if query.order:
        hits = sort_documents(hits, query.order, cut)
    else:
        hits.sort(key=_identity_key)
    if query.limit is not None:
        hits = hits[: query.limit]
    if query.columns is None:
        return [d for d, _ in hits]
    return [project(d, der, query.columns, cut) for d, der in hits]
