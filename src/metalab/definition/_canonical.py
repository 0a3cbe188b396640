"""Canonical, type-preserving byte encoding of parameter-like values.

Run ids are hashes of these bytes, so the encoding must be deterministic (same
value, same bytes, on every platform and Python version) and *injective across
types*: values that Python or JSON would blur together (``1`` / ``1.0`` /
``"1.0"`` / ``True``, the dict keys ``1`` and ``"1"``) must give different bytes.

Encoding rules (the output is compact JSON, keys sorted by code point,
ASCII-only with ``\\uXXXX`` escapes):

* ``None``, ``True``/``False``, ``int`` and ``str`` map to the JSON value of the
  same type (ints of any size are written as decimal integers).
* ``float`` -> ``{"$f": repr(x)}``.  ``repr`` is the shortest round-tripping
  form, so it is stable.  ``-0.0`` and ``0.0`` are kept apart.  NaN and
  infinities are refused with :class:`~metalab.CanonicalizationError` whose
  message names the key path (e.g. ``params.lr``).
* ``list`` and ``tuple`` -> JSON array.  **Tuples encode exactly like lists**,
  so ``(1, 2)`` and ``[1, 2]`` have the same fingerprint (tuples do not survive a
  JSON round trip, and a manifest reloaded from disk must keep its run ids).
* ``dict`` whose keys are all ``str`` -> JSON object.  A key that starts with
  ``$`` gets one more ``$`` in front (``"$f"`` -> ``"$$f"``), so a user dict can
  never look like one of the tags below.
* ``dict`` with any non-``str`` key -> ``{"$m": [[key, value], ...]}`` with both
  parts encoded by these rules and the pairs sorted by the encoded key bytes.
* ``set`` / ``frozenset`` -> ``{"$s": [...]}``, members sorted by encoded bytes.
* ``bytes`` / ``bytearray`` -> ``{"$b": hex}``.
* ``pathlib.PurePath`` -> ``{"$p": posix string}``.
* ``enum.Enum`` member -> ``{"$e": [class qualname, encoded value]}``.
* dataclass instance -> ``{"$dc": [class qualname, {field: value, ...}]}`` (all
  fields, in a sorted object).
* an object with a ``__metalab_canonical__()`` method (used by
  :class:`~metalab.definition.FilePath` and ``DirPath``) ->
  ``{"$o": [class qualname, encoded result]}``.
* numpy scalars and arrays (only if numpy is already imported; it is never
  imported here) are first converted to the Python equivalent (``.item()`` /
  ``.tolist()``), so ``numpy.float64(0.5)`` encodes like ``0.5``.

Anything else raises :class:`~metalab.CanonicalizationError` naming the type and
the key path.  All functions here are pure and thread-safe.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import pathlib
import sys
from typing import Any

from metalab._errors import CanonicalizationError

__all__ = ["canonical_bytes", "fingerprint"]

#: deepest nesting of containers a canonical value (and a context) may have
MAX_DEPTH = 200
#: hex digits kept of a sha256: fingerprints and run ids are this long
FINGERPRINT_LENGTH = 16


def _child(path: str, key: object) -> str:
    """Path of a dict entry: ``params.lr`` (non-str keys shown with repr)."""
    label = key if isinstance(key, str) else repr(key)
    return f"{path}.{label}" if path else label


def _item(path: str, index: int) -> str:
    """Path of a sequence item: ``params.layers[2]``."""
    return f"{path}[{index}]"


def _where(path: str) -> str:
    return f"at {path!r}" if path else "at the top level"


def _from_numpy(obj: Any) -> tuple[bool, Any]:
    np = sys.modules.get("numpy")
    if np is None:
        return False, None
    if isinstance(obj, np.ndarray):
        return True, obj.tolist()
    if isinstance(obj, np.generic):
        return True, obj.item()
    return False, None


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _encode(obj: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CanonicalizationError(
            f"value {_where(path)} is nested more than {MAX_DEPTH} levels deep "
            "(is it self-referencing?); flatten it"
        )
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, enum.Enum):
        return {"$e": [type(obj).__qualname__, _encode(obj.value, path, depth + 1)]}
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise CanonicalizationError(
                f"{obj!r} {_where(path)} has no canonical encoding (NaN and infinity "
                "cannot identify a run); use a finite number or a string such as 'nan'"
            )
        return {"$f": repr(float(obj))}
    if isinstance(obj, list | tuple):
        return [_encode(v, _item(path, i), depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {
                ("$" + k if k.startswith("$") else k): _encode(v, _child(path, k), depth + 1)
                for k, v in obj.items()
            }
        pairs = [
            [_encode(k, path, depth + 1), _encode(v, _child(path, k), depth + 1)]
            for k, v in obj.items()
        ]
        pairs.sort(key=lambda kv: _sort_key(kv[0]))
        return {"$m": pairs}
    if isinstance(obj, set | frozenset):
        members = [_encode(v, path, depth + 1) for v in obj]
        members.sort(key=_sort_key)
        return {"$s": members}
    if isinstance(obj, bytes | bytearray):
        return {"$b": bytes(obj).hex()}
    if isinstance(obj, pathlib.PurePath):
        return {"$p": obj.as_posix()}
    hook = getattr(type(obj), "__metalab_canonical__", None)
    if hook is not None:
        return {"$o": [type(obj).__qualname__, _encode(hook(obj), path, depth + 1)]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {
            f.name: _encode(getattr(obj, f.name), _child(path, f.name), depth + 1)
            for f in dataclasses.fields(obj)
        }
        return {"$dc": [type(obj).__qualname__, fields]}
    converted, value = _from_numpy(obj)
    if converted:
        return _encode(value, path, depth + 1)
    raise CanonicalizationError(
        f"value of type {type(obj).__module__}.{type(obj).__qualname__} {_where(path)} "
        "has no canonical encoding; use None, bool, int, float, str, list, tuple, dict, "
        "set, bytes, a dataclass or a numpy value"
    )


def canonical_bytes(obj: Any, *, path: str = "") -> bytes:
    """Return the canonical encoding of ``obj`` (see the module docstring).

    Args:
        obj: the value to encode.
        path: name of ``obj`` used in error messages (e.g. ``"params"`` makes a
            NaN under key ``lr`` be reported as ``params.lr``).

    Raises:
        CanonicalizationError: NaN/infinity, an unsupported type, or nesting
            deeper than 200 levels.
    """
    encoded = _encode(obj, path, 0)
    return json.dumps(
        encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def fingerprint(obj: Any, *, path: str = "") -> str:
    """``sha256(canonical_bytes(obj)).hexdigest()[:16]``.

    Raises:
        CanonicalizationError: as :func:`canonical_bytes`.
    """
    return hashlib.sha256(canonical_bytes(obj, path=path)).hexdigest()[:FINGERPRINT_LENGTH]
