"""A run's files as the UI serves them: artifacts (previewed by kind), logs, captured data.

Every file is reached by its *name* through the store (``open_artifact``,
``get_log``, ``get_data``), after checking that the run lists that name;
a client never supplies a path, so ``..``, absolute paths or encoded
slashes name nothing and end as :class:`~metalab.NotFoundError`.  Previews
are bounded (:data:`TEXT_PREVIEW_BYTES`, :data:`LOG_TAIL_LINES_MAX`,
:data:`LOG_TAIL_BYTES_MAX`, :data:`NUMPY_PREVIEW_BYTES`) and read only that
much of the file, so a huge file is never read whole into memory (a
download is streamed).  A file the store refuses (a symbolic link, a
folder, a file outside the store) is reported by name only, never by its
path on this machine.  Thread-safe; reads only.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from metalab._errors import CorruptRecordError, InvalidNameError, NotFoundError
from metalab._internal import _json
from metalab.model import ArtifactDescriptor, RunRecord
from metalab.store import Store

__all__ = [
    "IMAGE_TYPES",
    "LOG_TAIL_LINES_MAX",
    "TEXT_PREVIEW_BYTES",
    "artifact_chunks",
    "artifact_preview",
    "data_preview",
    "log_tail",
]

#: the most bytes of a text or JSON artifact / data item shown in a preview
TEXT_PREVIEW_BYTES = 64 * 1024
#: the most log lines one request returns
LOG_TAIL_LINES_MAX = 5000
#: the most bytes read from the end of a log for one tail (lines longer than
#: this end up cut)
LOG_TAIL_BYTES_MAX = 4 * 1024 * 1024
#: bytes read per step when tailing a log backwards, and per streamed download chunk
READ_CHUNK_BYTES = 64 * 1024
#: the largest numpy artifact previewed (it is read whole to be decoded)
NUMPY_PREVIEW_BYTES = 64 * 1024 * 1024
#: how a raw ``.npy`` file begins (``np.save``), as opposed to an ``.npz`` archive
_NPY_MAGIC = b"\x93NUMPY"
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


def _unreadable(what: str, run_id: str, name: str) -> NotFoundError:
    return NotFoundError(
        f"run {run_id} has no readable {what} {name!r} (it is missing, or it is not a "
        "regular file inside the store: a symbolic link, a folder, ...)")


def _open_artifact(store: Store, record: RunRecord, name: str) -> BinaryIO:
    try:
        return store.open_artifact(record.run_id, name)
    except (InvalidNameError, NotFoundError) as exc:
        # (the store's message names the path on this machine: not for the browser)
        raise _unreadable("artifact", record.run_id, name) from exc


def artifact_chunks(store: Store, record: RunRecord, name: str) -> tuple[Iterator[bytes], str]:
    """(the bytes of artifact ``name`` in chunks, its media type); NotFoundError if the run
    has none.  The file is open until the iterator is exhausted or closed."""
    desc = _descriptor(store, record, name)
    fh = _open_artifact(store, record, name)

    def chunks() -> Iterator[bytes]:
        with fh:
            while block := fh.read(READ_CHUNK_BYTES):
                yield block

    media = IMAGE_TYPES.get(desc.format.lower(), "application/octet-stream")
    return chunks(), media


def _read_at_most(store: Store, record: RunRecord, name: str, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of artifact ``name`` at most (more than ``limit``: cut)."""
    with _open_artifact(store, record, name) as fh:
        return fh.read(limit + 1)


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
    if data.startswith(_NPY_MAGIC):
        value = np.load(io.BytesIO(data), allow_pickle=False)
    else:
        value = deserialize(data, desc.kind, desc.format)
    arrays = value if isinstance(value, dict) else {desc.name: value}
    out = []
    for key, arr in arrays.items():
        a = np.asarray(arr)
        item: dict[str, Any] = {"name": str(key), "shape": list(a.shape), "dtype": str(a.dtype)}
        if a.size and np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a):
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
    if desc.kind == "numpy":
        data = _read_at_most(store, record, name, NUMPY_PREVIEW_BYTES)
        if len(data) > NUMPY_PREVIEW_BYTES:
            return {**base, "preview": {"type": "none", "reason": (
                f"too large to preview (over {NUMPY_PREVIEW_BYTES // 2**20} MiB); download it")}}
        try:
            return {**base, "preview": _numpy_preview(data, desc)}
        except (ValueError, OSError, TypeError, AttributeError, KeyError, EOFError) as exc:
            # (np.load's failures on a damaged or foreign file)
            return {**base, "preview": {"type": "none", "reason": f"unreadable array: {exc}"}}
    data = _read_at_most(store, record, name, TEXT_PREVIEW_BYTES)
    if (desc.kind == "json" or fmt == "json") and len(data) <= TEXT_PREVIEW_BYTES:
        try:
            pretty = _json.dumps_pretty(_json.loads(data)).decode()
        except ValueError:
            return {**base, "preview": _text_preview(data)}
        return {**base, "preview": {**_text_preview(pretty.encode()), "type": "json"}}
    return {**base, "preview": _text_preview(data)}


def _tail(fh: BinaryIO, lines: int) -> tuple[list[str], bool]:
    """(the last ``lines`` lines of ``fh``, whether the file holds more before them),
    reading backwards from the end at most :data:`LOG_TAIL_BYTES_MAX` bytes."""
    pos = fh.seek(0, os.SEEK_END)
    buf = b""
    while pos > 0 and buf.count(b"\n") <= lines and len(buf) < LOG_TAIL_BYTES_MAX:
        step = min(READ_CHUNK_BYTES, pos, LOG_TAIL_BYTES_MAX - len(buf))
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
    # (the first line found may be cut: it is dropped unless fewer lines were found)
    found = buf.decode("utf-8", errors="replace").splitlines()
    return found[-lines:], pos > 0 or len(found) > lines


def log_tail(store: Store, run_id: str, name: str, lines: int) -> dict[str, Any]:
    """The last ``lines`` lines of log ``name`` and ``truncated`` (the log holds more);
    NotFoundError if the run has no such log or the store refuses to read it."""
    if name not in store.list_logs(run_id):
        raise NotFoundError(f"run {run_id} has no log {name!r}")
    lines = max(1, min(lines, LOG_TAIL_LINES_MAX))
    try:
        fh = store.open_log(run_id, name)
    except (InvalidNameError, NotFoundError) as exc:
        raise _unreadable("log", run_id, name) from exc
    if fh is None:
        return {"name": name, "lines": [], "truncated": False}
    with fh:
        tail, more = _tail(fh, lines)
    return {"name": name, "lines": tail, "truncated": more}


def data_preview(store: Store, run_id: str, name: str) -> dict[str, Any]:
    """Captured data item ``name`` as pretty JSON text (bounded); NotFoundError if missing."""
    if name not in store.list_data(run_id):
        raise NotFoundError(f"run {run_id} has no data item {name!r}")
    try:
        payload = store.get_data(run_id, name)
    except CorruptRecordError as exc:
        return {"name": name, "error": str(exc)}
    except NotFoundError as exc:
        raise _unreadable("data item", run_id, name) from exc
    if payload is None:
        raise NotFoundError(f"run {run_id} has no data item {name!r}")
    text = _json.dumps_pretty(payload.get("data")).decode()
    meta = {k: payload.get(k) for k in ("kind", "dtype", "shape", "metadata") if payload.get(k)}
    return {"name": name, **meta, **_text_preview(text.encode())}
