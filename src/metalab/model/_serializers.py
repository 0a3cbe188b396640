"""Artifact serializers: turn Python objects into bytes and back.

Kinds: ``json`` (JSON values), ``numpy`` (an array or a dict of arrays, stored
as ``.npz``), ``pickle`` (only when asked for explicitly), ``text``, ``bytes``
and ``file`` (an existing file copied as is).  Loading a pickle runs code from
the file: only load artifacts you trust.
"""

from __future__ import annotations

import io
from typing import Any

from metalab._errors import ValidationError
from metalab._internal import _json

__all__ = ["SerializedArtifact", "deserialize", "serialize"]

SerializedArtifact = tuple[bytes, str, str]  # (payload, kind, format)


def _is_numpy(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod == "numpy" or mod.startswith("numpy.")


def serialize(obj: Any, kind: str | None = None) -> SerializedArtifact:
    """Serialize ``obj``; ``kind=None`` picks json, then numpy.

    Pickle is never picked automatically: pass ``kind="pickle"``.

    Raises:
        ValidationError: the object cannot be stored with the chosen kind.
    """
    if kind is None:
        if isinstance(obj, bytes | bytearray):
            kind = "bytes"
        elif _is_numpy(obj) or (
            isinstance(obj, dict) and obj and all(_is_numpy(v) for v in obj.values())
        ):
            kind = "numpy"
        else:
            kind = "json"
    if kind == "json":
        try:
            return _json.dumps_pretty(obj), "json", "json"
        except TypeError as exc:
            raise ValidationError(
                f"cannot store {type(obj).__name__} as a JSON artifact ({exc}); "
                "pass kind='pickle' to pickle it, or convert it to lists/dicts first"
            ) from exc
    if kind == "numpy":
        import numpy as np

        buf = io.BytesIO()
        if isinstance(obj, dict):
            arrays: dict[str, Any] = {str(k): np.asarray(v) for k, v in obj.items()}
            np.savez(buf, **arrays)
        else:
            np.savez(buf, arr=np.asarray(obj))
        return buf.getvalue(), "numpy", "npz"
    if kind == "pickle":
        import pickle

        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), "pickle", "pkl"
    if kind == "text":
        return str(obj).encode("utf-8"), "text", "txt"
    if kind == "bytes":
        return bytes(obj), "bytes", "bin"
    raise ValidationError(
        f"unknown artifact kind {kind!r}; use one of json, numpy, pickle, text, bytes "
        "(or pass a file path for a raw file)"
    )


def deserialize(data: bytes, kind: str, fmt: str = "") -> Any:
    """Inverse of :func:`serialize`; unknown kinds (raw files) come back as bytes."""
    if kind == "json":
        return _json.loads(data)
    if kind == "numpy":
        import numpy as np

        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if list(arrays) == ["arr"]:
            return arrays["arr"]
        return arrays
    if kind == "pickle":
        import pickle

        return pickle.loads(data)
    if kind == "text":
        return data.decode("utf-8")
    return data
