"""Fast JSON encoding (orjson) with one set of options for the whole project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "dumps_pretty", "loads"]

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


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact UTF-8 JSON with sorted keys."""
    return orjson.dumps(obj, default=_default, option=_OPTS)


def dumps_pretty(obj: Any) -> bytes:
    """Encode ``obj`` as indented JSON (for human-read files such as manifests)."""
    return orjson.dumps(obj, default=_default, option=_OPTS | orjson.OPT_INDENT_2)


#: Decode JSON (bytes or str); raises :data:`JSONDecodeError` (a ``ValueError``)
#: on bad input.  orjson's own function, not a wrapper: bulk reads call it once
#: per record file, and a Python call level costs about 5 % of a small record's parse.
loads: Callable[[bytes | str], Any] = orjson.loads
