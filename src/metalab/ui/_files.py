"""A run's files as the UI serves them: artifacts (previewed by kind), logs, captured data.

Every file is reached by its *name* through the store (``open_artifact``,
``get_log``, ``get_data``), after checking that the run lists that name;
a client never supplies a path, so ``..``, absolute paths or encoded
slashes name nothing and end as :class:`~metalab.NotFoundError`.  Previews
are bounded (:data:`TEXT_PREVIEW_BYTES`, :data:`LOG_TAIL_LINES_MAX`) so a
huge file never reaches the browser whole.  Thread-safe; reads only.
"""

from __future__ import annotations

import math
from typing import Any

from metalab._errors import CorruptRecordError, InvalidNameError, NotFoundError
from metalab._internal import _json
from metalab.model import ArtifactDescriptor, RunRecord
from metalab.store import Store

__all__ = [
    "IMAGE_TYPES",
    "LOG_TAIL_LINES_MAX",
    "TEXT_PREVIEW_BYTES",
    "artifact_bytes",
    "artifact_preview",
    "data_preview",
    "log_tail",
]

#: the most bytes of a text or JSON artifact / data item shown in a preview
TEXT_PREVIEW_BYTES = 64 * 1024
#: the most log lines one request returns
LOG_TAIL_LINES_MAX = 5000
#: artifact formats shown inline as images, and their media types (never SVG:
#: it may hold scripts)
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
               "gif": "image/gif", "webp": "image/webp"}
_TEXT_FORMATS = frozenset({"txt", "log", "md", "csv", "tsv", "yaml", "yml", "toml", "ini"})
#: the most numbers of a numpy artifact drawn as a line
NUMPY_PLOT_POINTS = 2000


def _descriptor(store: Store, record: RunRecord, name: str) -> ArtifactDescriptor:
    listed = list(record.artifacts) or list(store.list_artifacts(record.run_id))
    for desc in listed:
        if desc.name == name:
            return desc
    raise NotFoundError(f"run {record.run_id} has no artifact {name!r}")


def artifact_bytes(store: Store, record: RunRecord, name: str) -> tuple[bytes, str]:
    """(the bytes of artifact ``name``, its media type); NotFoundError if the run has none."""
    desc = _descriptor(store, record, name)
    try:
        data = store.get_artifact_bytes(record.run_id, name)
    except InvalidNameError as exc:
        raise NotFoundError(f"run {record.run_id} has no artifact {name!r}") from exc
    media = IMAGE_TYPES.get(desc.format.lower(), "application/octet-stream")
    return data, media


def _text_preview(data: bytes) -> dict[str, Any]:
    cut = data[:TEXT_PREVIEW_BYTES]
    return {"type": "text", "text": cut.decode("utf-8", errors="replace"),
            "truncated": len(data) > len(cut)}


def _numpy_preview(data: bytes, desc: ArtifactDescriptor) -> dict[str, Any]:
    try:
        import numpy as np

        from metalab.model import deserialize
    except ImportError:
        return {"type": "none", "reason": "numpy is not installed (pip install 'metalab[numpy]')"}
    value = deserialize(data, desc.kind, desc.format)
    arrays = value if isinstance(value, dict) else {desc.name: value}
    out = []
    for key, arr in arrays.items():
        a = np.asarray(arr)
        item: dict[str, Any] = {"name": str(key), "shape": list(a.shape), "dtype": str(a.dtype)}
        if a.size and np.issubdtype(a.dtype, np.number):
            finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
            if finite.size:
                item.update(min=float(finite.min()), max=float(finite.max()),
                            mean=float(finite.mean()))
            flat = a.reshape(-1)
            step = max(1, math.ceil(flat.size / NUMPY_PLOT_POINTS))
            item["values"] = [None if not math.isfinite(float(v)) else float(v)
                              for v in flat[::step]]
            item["stride"] = step
        out.append(item)
    return {"type": "numpy", "arrays": out}


def artifact_preview(store: Store, record: RunRecord, name: str) -> dict[str, Any]:
    """What the run page shows of artifact ``name``, by its kind and format.

    ``{"type": "image"}`` (the page loads the bytes), ``"json"`` / ``"text"``
    (the first :data:`TEXT_PREVIEW_BYTES`), ``"numpy"`` (shape, dtype, min,
    max, mean and a thinned copy of the values per array) or ``"none"`` with
    the reason.  Raises NotFoundError when the run has no such artifact.
    """
    desc = _descriptor(store, record, name)
    fmt = desc.format.lower()
    base = {"name": desc.name, "kind": desc.kind, "format": desc.format,
            "size_bytes": desc.size_bytes}
    if fmt in IMAGE_TYPES:
        return {**base, "preview": {"type": "image"}}
    if desc.kind not in ("json", "text", "numpy") and fmt not in _TEXT_FORMATS and fmt != "json":
        return {**base, "preview": {"type": "none", "reason": f"no preview for {desc.kind} files"}}
    data, _ = artifact_bytes(store, record, name)
    if desc.kind == "numpy":
        try:
            return {**base, "preview": _numpy_preview(data, desc)}
        except (ValueError, OSError) as exc:
            return {**base, "preview": {"type": "none", "reason": f"unreadable array: {exc}"}}
    if desc.kind == "json" or fmt == "json":
        try:
            pretty = _json.dumps_pretty(_json.loads(data)).decode()
        except ValueError:
            return {**base, "preview": _text_preview(data)}
        return {**base, "preview": {**_text_preview(pretty.encode()), "type": "json"}}
    return {**base, "preview": _text_preview(data)}


def log_tail(store: Store, run_id: str, name: str, lines: int) -> dict[str, Any]:
    """The last ``lines`` lines of log ``name`` (NotFoundError if the run has no such log)."""
    if name not in store.list_logs(run_id):
        raise NotFoundError(f"run {run_id} has no log {name!r}")
    lines = max(1, min(lines, LOG_TAIL_LINES_MAX))
    text = store.get_log(run_id, name) or ""
    all_lines = text.splitlines()
    return {"name": name, "lines": all_lines[-lines:], "total_lines": len(all_lines)}


def data_preview(store: Store, run_id: str, name: str) -> dict[str, Any]:
    """Captured data item ``name`` as pretty JSON text (bounded); NotFoundError if missing."""
    if name not in store.list_data(run_id):
        raise NotFoundError(f"run {run_id} has no data item {name!r}")
    try:
        payload = store.get_data(run_id, name)
    except CorruptRecordError as exc:
        return {"name": name, "error": str(exc)}
    if payload is None:
        raise NotFoundError(f"run {run_id} has no data item {name!r}")
    text = _json.dumps_pretty(payload.get("data")).decode()
    meta = {k: payload.get(k) for k in ("kind", "dtype", "shape", "metadata") if payload.get(k)}
    return {"name": name, **meta, **_text_preview(text.encode())}
