"""Context values and their fingerprints.

A context is any canonicalizable value (dataclasses, dicts, lists, tuples,
scalars) that an operation receives unchanged.  Files and folders it depends on
are declared with :class:`FilePath` / :class:`DirPath` markers: they behave like
paths (``open(ctx.data)`` works through ``__fspath__``) and contribute a
fingerprint of the file(s) to the context's identity.

The fingerprint is computed lazily, the first time :func:`resolve_context` or
:func:`context_fingerprint` needs it, and cached on the marker instance:

* default (cheap) mode: file name relative to the marker (the base name for a
  ``FilePath``, the path under the folder for ``DirPath`` members), size and
  ``mtime_ns``.  Neither the absolute location nor the inode is used, so moving
  the data folder or copying it with ``rsync -a`` / ``cp -p`` keeps run ids.
* ``hash_content=True``: the name and the sha256 of the content instead of size
  and mtime (slower, but stable under ``touch`` and plain copies).
* ``hash_path=True`` (the original metalab's keyword): the path as given is
  part of the fingerprint too, so the same data at another path is another
  context.

Markers are picklable (the cache is not pickled) and safe to read from several
threads (at worst two threads compute the same fingerprint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from metalab._errors import CanonicalizationError, ValidationError
from metalab.definition._canonical import MAX_DEPTH, fingerprint

__all__ = ["DirPath", "FilePath", "context_fingerprint", "resolve_context"]

_CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _PathMarker:
    kind = ""

    path: str
    hash_content: bool
    hash_path: bool
    _payload: dict[str, Any] | None

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def fingerprint_payload(self) -> dict[str, Any]:
        """The JSON dict that identifies the file(s); computed once per instance.

        Raises:
            ValidationError: the path does not exist (or has the wrong kind).
        """
        if self._payload is None:
            payload = self._compute()
            self._payload = {**payload, "path": self.path} if self.hash_path else payload
        return dict(self._payload)

    def _flags(self) -> str:
        """The keywords of the repr that differ from their defaults."""
        return (", hash_content=True" if self.hash_content else "") + (
            ", hash_path=True" if self.hash_path else "")

    def __metalab_canonical__(self) -> dict[str, Any]:
        return self.fingerprint_payload()

    def _compute(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _missing(self, what: str) -> ValidationError:
        return ValidationError(
            f"{self.kind}({self.path!r}): {what}; create it or fix the path "
            "before running the experiment"
        )


class FilePath(_PathMarker):
    """A file the context depends on; see the module docstring.

    Construction never touches the file system.
    """

    kind = "FilePath"

    def __init__(self, path: str | os.PathLike[str], hash_content: bool = False, *,
                 hash_path: bool = False) -> None:
        self.path = os.fspath(path)
        self.hash_content = bool(hash_content)
        self.hash_path = bool(hash_path)
        self._payload = None

    def _compute(self) -> dict[str, Any]:
        p = Path(self.path)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise self._missing("file not found") from None
        except OSError as exc:
            raise self._missing(f"cannot read file ({exc})") from exc
        if not p.is_file():
            raise self._missing("not a regular file (use DirPath for folders)")
        if self.hash_content:
            return {"kind": "file", "name": p.name, "sha256": _sha256_file(p)}
        return {"kind": "file", "name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_file_path, (self.path, self.hash_content, self.hash_path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FilePath):
            return NotImplemented
        return (self.path, self.hash_content, self.hash_path) == (
            other.path, other.hash_content, other.hash_path)

    def __hash__(self) -> int:
        return hash((self.kind, self.path, self.hash_content, self.hash_path))

    def __repr__(self) -> str:
        return f"FilePath({self.path!r}{self._flags()})"


def _file_path(path: str, hash_content: bool, hash_path: bool = False) -> FilePath:
    """Unpickle a :class:`FilePath` (``hash_path`` is keyword-only)."""
    return FilePath(path, hash_content, hash_path=hash_path)


def _dir_path(path: str, pattern: str, hash_content: bool, hash_path: bool = False) -> DirPath:
    """Unpickle a :class:`DirPath` (``hash_path`` is keyword-only)."""
    return DirPath(path, pattern, hash_content, hash_path=hash_path)


class DirPath(_PathMarker):
    """A folder the context depends on: the files matching ``pattern`` in it.

    ``pattern`` is a :meth:`pathlib.Path.glob` pattern relative to the folder
    (``"*"`` = files directly inside, ``"**/*"`` = all files below).  Only
    regular files count.  Construction never touches the file system.
    """

    kind = "DirPath"

    def __init__(
        self, path: str | os.PathLike[str], pattern: str = "*", hash_content: bool = False, *,
        hash_path: bool = False,
    ) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValidationError(f"DirPath pattern must be a non-empty string, got {pattern!r}")
        self.path = os.fspath(path)
        self.pattern = pattern
        self.hash_content = bool(hash_content)
        self.hash_path = bool(hash_path)
        self._payload = None

    def _compute(self) -> dict[str, Any]:
        root = Path(self.path)
        if not root.exists():
            raise self._missing("folder not found")
        if not root.is_dir():
            raise self._missing("not a folder (use FilePath for single files)")
        files: list[dict[str, Any]] = []
        for member in sorted(root.glob(self.pattern)):
            if not member.is_file():
                continue
            rel = member.relative_to(root).as_posix()
            if self.hash_content:
                files.append({"name": rel, "sha256": _sha256_file(member)})
            else:
                st = member.stat()
                files.append({"name": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        files.sort(key=lambda f: f["name"])
        return {"kind": "dir", "pattern": self.pattern, "files": files}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_dir_path, (self.path, self.pattern, self.hash_content, self.hash_path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DirPath):
            return NotImplemented
        return (self.path, self.pattern, self.hash_content, self.hash_path) == (
            other.path, other.pattern, other.hash_content, other.hash_path)

    def __hash__(self) -> int:
        return hash((self.kind, self.path, self.pattern, self.hash_content, self.hash_path))

    def __repr__(self) -> str:
        return f"DirPath({self.path!r}, pattern={self.pattern!r}{self._flags()})"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}"


def _resolve(obj: Any, path: str, manifest: dict[str, Any], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CanonicalizationError(f"context at {path!r} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(obj, _PathMarker):
        payload = obj.fingerprint_payload()
        entry: dict[str, Any] = {
            "type": obj.kind,
            "path": obj.path,
            "hash_content": obj.hash_content,
            "fingerprint": fingerprint(payload),
            "payload": payload,
        }
        if isinstance(obj, DirPath):
            entry["pattern"] = obj.pattern
        manifest[path] = entry
        return payload
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _resolve(getattr(obj, f.name), _join(path, f.name), manifest, depth + 1)
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, dict):
        return {str(k): _resolve(v, _join(path, k), manifest, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_resolve(v, f"{path}[{i}]", manifest, depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return sorted((_resolve(v, path, manifest, depth + 1) for v in obj), key=repr)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "value") and hasattr(obj, "name"):  # enums
        return _resolve(obj.value, path, manifest, depth + 1)
    raise CanonicalizationError(
        f"context value of type {type(obj).__qualname__} at {path!r} cannot be resolved; "
        "use dataclasses, dicts, lists, scalars, FilePath or DirPath"
    )


def resolve_context(ctx: Any) -> tuple[Any, dict[str, Any]]:
    """Compute the fingerprints of every FilePath/DirPath inside ``ctx``.

    Returns ``(resolved, manifest)``: ``resolved`` is a JSON-friendly copy of
    ``ctx`` (dataclasses become dicts of their fields, tuples become lists,
    markers are replaced by their fingerprint payload), and ``manifest`` maps
    the marker locations (``"context.data.train"``, ``"context.files[0]"``) to
    ``{"type", "path", "hash_content", "fingerprint", "payload"}``.

    Raises:
        ValidationError: a declared file or folder is missing.
        CanonicalizationError: a value of an unsupported type.
    """
    manifest: dict[str, Any] = {}
    resolved = _resolve(ctx, "context", manifest, 0)
    return resolved, manifest


def context_fingerprint(ctx: Any) -> str:
    """16-hex fingerprint of the context, file fingerprints included.

    It is :func:`~metalab.definition.fingerprint` of ``ctx`` itself, so
    dataclass names and value types count (``1`` and ``1.0`` differ).

    Raises:
        ValidationError: a declared file or folder is missing.
        CanonicalizationError: NaN/infinity or an unsupported type (the message
            names the path, e.g. ``context.lr``).
    """
    return fingerprint(ctx, path="context")
