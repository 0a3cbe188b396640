"""Fast JSON encoding (orjson) with one set of options for the whole project.

Non-finite numbers.  JSON has no infinity or NaN (orjson writes them as
``null``, and strict parsers, orjson included, reject Python's ``Infinity`` /
``NaN`` literals), so where metalab stores a number that a user may record as
non-finite (metrics, derived values, the values of a metric series) the file
holds the JSON text ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` instead: the
files stay strict JSON for every reader (jq, JavaScript, PostgreSQL JSONB),
and these texts are what Python's ``float()`` and JavaScript's ``Number()``
parse into those numbers.  In those places the three texts always mean the
numbers: capture refuses them as text metrics.  :func:`encode_number` /
:func:`encode_values` write this form, :func:`decode_number` /
:func:`decode_values` read it; other JSON (params, data, tags) is left alone.
The same texts stand for the elements of a numpy float array stored as data
(its ``dtype`` says they are numbers); other data cannot hold such numbers
(:func:`has_non_finite` finds them, and capture refuses them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from metalab._errors import ValidationError

__all__ = [
    "NON_FINITE_TEXTS",
    "JSONDecodeError",
    "UnencodableValueError",
    "decode_list",
    "decode_number",
    "decode_values",
    "dumps",
    "dumps_pretty",
    "encode_list",
    "encode_number",
    "encode_values",
    "has_non_finite",
    "loads",
]

JSONDecodeError = orjson.JSONDecodeError

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    # numpy scalars that orjson does not serialise natively, sets, paths, enums
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if hasattr(obj, "__fspath__"):
        return str(obj.__fspath__())
    if hasattr(obj, "value") and hasattr(obj, "name"):
        return obj.value
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class UnencodableValueError(ValidationError, TypeError):
    """A value to store has no JSON form: a text with a lone surrogate (``"\\ud800"``), an
    integer beyond 64 bits, bytes, or an object of another type.

    A :class:`~metalab.ValidationError` (so callers see metalab's own error,
    saying what to do) and a ``TypeError`` (what JSON encoders raise for values
    they cannot encode, which callers may already handle).
    """


#: (text in the encoder's message, what to tell the user)
_UNENCODABLE_HINTS = (
    ("surrogates not allowed",
     "a text (a key or a value) holds a lone surrogate, which is not valid Unicode and cannot "
     "be stored as UTF-8 JSON; decode your input with errors='replace' or remove the character"),
    ("exceeds 64-bit range",
     "an integer beyond 64 bits cannot be stored in a JSON record; store it as text (str(value))"),
)


def _encode(obj: Any, option: int) -> bytes:
    try:
        return orjson.dumps(obj, default=_default, option=option)
    except TypeError as exc:
        text = str(exc)
        for needle, hint in _UNENCODABLE_HINTS:
            if needle in text:
                raise UnencodableValueError(hint) from None
        raise UnencodableValueError(
            f"a value cannot be stored as JSON ({text}); store bytes as text (value.hex()) or "
            "as an artifact, and other objects as plain data (numbers, texts, lists, dicts)"
        ) from None


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact UTF-8 JSON with sorted keys.

    Raises:
        UnencodableValueError: a value has no JSON form (see the class).
    """
    return _encode(obj, _OPTS)


def dumps_pretty(obj: Any) -> bytes:
    """Encode ``obj`` as indented JSON (for human-read files such as manifests); raises as :func:`dumps`."""
    return _encode(obj, _OPTS | orjson.OPT_INDENT_2)


#: Decode JSON (bytes or str); raises :data:`JSONDecodeError` (a ``ValueError``)
#: on bad input.  orjson's own function, not a wrapper: bulk reads call it once
#: per record file, and a Python call level costs about 5 % of a small record's parse.
loads: Callable[[bytes | str], Any] = orjson.loads


# ------------------------------------------------------------- non-finite numbers
#: the stored text of each non-finite number -> the number (one NaN object, so
#: decoded values compare equal by identity in containers)
NON_FINITE_TEXTS: dict[str, float] = {"Infinity": math.inf, "-Infinity": -math.inf,
                                      "NaN": math.nan}
_TEXTS = frozenset(NON_FINITE_TEXTS)
_GET_NUMBER = NON_FINITE_TEXTS.get


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def encode_number(value: Any) -> Any:
    """``value`` as stored: a non-finite float becomes its text, anything else is kept."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def decode_number(value: Any) -> Any:
    """A stored value as a Python value: one of the three texts becomes its float."""
    return _GET_NUMBER(value, value) if type(value) is str else value


def encode_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (metric name -> value) as stored; the same dict when nothing changes."""
    if not any(map(_non_finite, values.values())):
        return values
    return {k: encode_number(v) for k, v in values.items()}


def decode_values(values: dict[str, Any]) -> dict[str, Any]:
    """Stored ``values`` (name -> value) as Python values; the same dict when nothing changes."""
    try:
        if _TEXTS.isdisjoint(values.values()):
            return values
    except TypeError:  # a list or object among the values (written by another tool)
        pass
    return {k: _GET_NUMBER(v, v) if type(v) is str else v for k, v in values.items()}


def encode_list(values: list[Any]) -> list[Any]:
    """The values of a series as stored; the same list when nothing changes."""
    if not any(map(_non_finite, values)):
        return values
    return [encode_number(v) for v in values]


def has_non_finite(value: Any) -> bool:
    """Does ``value`` (a float, or lists / tuples / dicts / numpy arrays of values)
    hold a NaN or an infinity anywhere (which :func:`dumps` would write as null)?"""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(has_non_finite, value.values()))
    if isinstance(value, list | tuple):
        return any(map(has_non_finite, value))
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return has_non_finite(value.tolist())
    return False


def decode_list(values: list[Any]) -> list[Any]:
    """Stored series values as Python values; the same list when nothing changes."""
    try:
        if _TEXTS.isdisjoint(values):
            return values
    except TypeError:
        pass
    return [_GET_NUMBER(v, v) if type(v) is str else v for v in values]
