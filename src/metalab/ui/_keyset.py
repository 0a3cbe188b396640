"""Keyset pagination over a sorted run query: the filter that selects the rows after a row.

A page of the runs view ends with a row; the next page is the same query
plus a filter matching exactly the runs that come after that row in the
query's order (the order of :mod:`metalab.query`: within one field numbers
and instants first, NaN after every other number, then strings, then
booleans, then runs without a value; ``desc`` reverses values inside each
kind only; ties by run id).  The filter is written in the query language
itself, so every engine (in memory, the FileStore catalog, PostgreSQL)
answers it the same way and no page is read twice or skipped, however
many runs are written meanwhile.

The cursor is the sort values of the last row plus its run id, sent to the
browser as URL-safe base64 of its JSON; a cursor that does not decode is a
:class:`~metalab.ValidationError`.  Pure functions; thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

from metalab._errors import ValidationError
from metalab._internal import _json

__all__ = ["after_filter", "decode_cursor", "encode_cursor", "literal", "quote_field"]

#: top-level fields whose values are instants (compared with ISO 8601 strings)
_TIME_FIELDS = frozenset({"started_at", "finished_at"})
#: top-level fields that hold a number or nothing (a probe with a text is a type error)
_NUMBER_FIELDS = frozenset({"duration_ms"})
#: top-level fields that always hold a string
_STRING_FIELDS = frozenset({"run_id", "experiment_id", "status"})
#: the kinds of one field in the query order (a list or object sorts as a missing value)
_RANKS = ("number", "string", "boolean", "null")
#: constant filters (every run has a run id)
_ALWAYS = "run_id is not null"
_NEVER = "run_id is null"
#: a number literal beyond the float range: the parser reads it as an infinity
_INFINITY_TEXT = "1e999"


def literal(value: Any) -> str:
    """``value`` (number, string, boolean) as a literal of the query language."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return _INFINITY_TEXT if value > 0 else "-" + _INFINITY_TEXT
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\r", "\\r").replace("\t", "\\t").replace("\0", "\\0"))
        return f'"{escaped}"'
    raise ValidationError(f"cannot write {value!r} as a query literal")


def quote_field(path: str) -> str:
    """``params.lr`` -> ``params."lr"`` (any name written safely); top-level names as is."""
    ns, dot, name = path.partition(".")
    return f"{ns}.{literal(name)}" if dot else ns


def _number_of(field: str, value: Any) -> Any:
    """A metric or derived value as the query engines see it (a stored "NaN" is a number)."""
    if isinstance(value, str) and field.startswith(("metrics.", "derived.")):
        return _json.NON_FINITE_TEXTS.get(value, value)
    return value


def _rank(field: str, value: Any) -> str:
    if value is None or isinstance(value, list | dict):
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if field in _TIME_FIELDS:
        return "number"  # an instant: ordered with the numbers
    return "string"


def _is_rank(f: str, rank: str, field: str) -> str:
    """A filter true when field ``f`` holds a value of kind ``rank``."""
    if field in _TIME_FIELDS or field in _NUMBER_FIELDS:
        return f"{f} is not null" if rank == "number" else (
            f"{f} is null" if rank == "null" else _NEVER)
    if field in _STRING_FIELDS:
        return _ALWAYS if rank == "string" else _NEVER
    probes = {"number": "0", "string": '""', "boolean": "true"}
    if rank == "null":
        return "not (" + " or ".join(
            f"{f} = {p} or {f} != {p}" for p in probes.values()) + ")"
    p = probes[rank]
    return f"({f} = {p} or {f} != {p})"


def _nan(f: str) -> str:
    return f"({f} != 0 and not ({f} >= 0 or {f} < 0))"


def _after_value(f: str, field: str, value: Any, desc: bool) -> tuple[str, str]:
    """(filter: strictly after ``value`` within its kind, filter: equal to ``value``)."""
    rank = _rank(field, value)
    if rank == "null":
        return _NEVER, _is_rank(f, "null", field)
    if rank == "boolean":
        later = not value if not desc else value is True
        strictly = f"{f} = {literal(not value)}" if later else _NEVER
        return strictly, f"{f} = {literal(value)}"
    if isinstance(value, float) and math.isnan(value):
        # NaN is the last number ascending and the first descending
        strictly = _NEVER if not desc else f"({_is_rank(f, 'number', field)} and not {_nan(f)})"
        return strictly, _nan(f)
    lit = literal(value)
    if desc:
        return f"{f} < {lit}", f"{f} = {lit}"
    strictly = f"{f} > {lit}"
    if rank == "number" and field not in _TIME_FIELDS:
        strictly = f"({strictly} or {_nan(f)})"
    return strictly, f"{f} = {lit}"


def after_filter(order: Sequence[tuple[str, bool]], values: Sequence[Any], run_id: str) -> str:
    """The filter matching the runs after the row ``(values, run_id)`` in ``order``.

    ``order``: ``(field path, descending)`` pairs as in the query's
    ``order_by``; ``values``: that row's value of each (``None`` when it has
    none).  Raises :class:`~metalab.ValidationError` if the lengths differ.
    """
    if len(order) != len(values):
        raise ValidationError("the page cursor does not match the sort order; reload the page")
    tail = f"run_id > {literal(run_id)}"
    for (field, desc), value in zip(reversed(order), reversed(values), strict=True):
        f = quote_field(field)
        value = _number_of(field, value)
        rank = _rank(field, value)
        later = _RANKS[_RANKS.index(rank) + 1:]
        strictly, equal = _after_value(f, field, value, desc)
        parts = [strictly, *(_is_rank(f, r, field) for r in later), f"({equal} and ({tail}))"]
        tail = " or ".join(f"({p})" for p in parts)
    return tail


def encode_cursor(values: Sequence[Any], run_id: str) -> str:
    """The cursor of a row, as URL-safe text."""
    raw = _json.dumps({"v": list(values), "r": run_id})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> tuple[list[Any], str]:
    """``(values, run_id)`` of a cursor made by :func:`encode_cursor`.

    Raises:
        ValidationError: the text is not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = _json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise ValidationError(f"the page cursor {text[:40]!r} is damaged; reload the page") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("r"), str) or not isinstance(
            doc.get("v"), list):
        raise ValidationError(f"the page cursor {text[:40]!r} is damaged; reload the page")
    return doc["v"], doc["r"]
