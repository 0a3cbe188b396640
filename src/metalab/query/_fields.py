"""Which fields runs have: the one field catalog every engine follows.

A run *has* the dynamic field ``params.x`` (``metrics.x``) when the
``params`` (``metrics``) object of its document holds ``x`` with a non-null
value, and ``derived.x`` when its derived values hold ``x`` with a non-null
value; derived values of a file without a run record count for nothing.
:func:`field_keys` is that definition on one document.

A query that names a dynamic field no run in scope has raises
:class:`~metalab.UnknownFieldError`, unless the scope holds no runs (there is
nothing to mistype).  Every engine applies that rule through
:func:`require_fields`: the in-memory engine with :func:`field_keys` over
the documents it reads, the SQLite catalog by a non-NULL cell in the
field's column, PostgreSQL by ``jsonb_typeof(...) <> 'null'``.  Pure
functions; thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from metalab.query._ast import DYNAMIC, Query, check_fields

__all__ = ["FieldKey", "field_keys", "known_fields", "named_fields", "require_fields"]

#: ``(namespace, name)`` of a dynamic field, e.g. ``("params", "lr")``
FieldKey = tuple[str, str]

_DOCUMENT_NAMESPACES = ("params", "metrics")


def field_keys(doc: dict[str, Any], derived: dict[str, Any] | None = None) -> set[FieldKey]:
    """The dynamic fields one run has (see the module doc): non-null params and
    metrics of ``doc``, non-null ``derived`` values."""
    keys: set[FieldKey] = set()
    for ns in _DOCUMENT_NAMESPACES:
        values = doc.get(ns)
        if isinstance(values, dict):
            keys.update((ns, k) for k, v in values.items() if v is not None)
    if derived:
        keys.update(("derived", k) for k, v in derived.items() if v is not None)
    return keys


def known_fields(docs: Iterable[dict[str, Any]], derived: Iterable[dict[str, Any]] = ()) -> set[str]:
    """``{"params.x", "metrics.y", "derived.z"}`` that some document (or derived
    values) has, by :func:`field_keys`."""
    names: set[str] = set()
    for d in docs:
        names.update(f"{ns}.{name}" for ns, name in field_keys(d))
    for der in derived:
        names.update(f"derived.{name}" for _, name in field_keys({}, der))
    return names


def named_fields(query: Query) -> list[FieldKey]:
    """The dynamic fields ``query`` names (filter, columns, order), sorted, each once."""
    return sorted({(f.ns, f.name) for f in query.fields() if f.ns in DYNAMIC and f.name})


def require_fields(
    query: Query,
    present: Callable[[list[FieldKey]], set[FieldKey]],
    known: Callable[[set[FieldKey]], Iterable[FieldKey]],
    any_runs: Callable[[], bool],
) -> None:
    """Raise :class:`~metalab.UnknownFieldError` for a dynamic field of ``query`` no run has.

    ``present(keys)``: which of ``keys`` some run in scope has (asked once,
    only when the query names dynamic fields).  Only when one is missing are
    ``known(present_keys)`` (every field the runs have, for the message) and
    ``any_runs()`` asked.
    """
    keys = named_fields(query)
    if not keys:
        return
    found = present(keys)
    if len(found) == len(keys):
        return
    names = {f"{ns}.{name}" for ns, name in known(found)}
    check_fields(query, lambda: names, any_runs=any_runs())
