"""Context helpers under the original metalab's names: ``context_spec``, ``file_hash``, ``dir_hash``.

``@context_spec`` makes a class a frozen dataclass with a ``fingerprint``
property equal to the fingerprint the runner gives the context
(:func:`~metalab.definition.context_fingerprint`), so the two never disagree.
It is computed on each access (it stats or hashes the declared files), never
cached by object identity.

``file_hash`` / ``dir_hash`` hash file *content*: 16 hex characters, stable
across copies, moves and ``touch``.  Thread-safe; they only read files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from metalab._errors import ValidationError
from metalab.definition._context import context_fingerprint

__all__ = ["context_spec", "dir_hash", "file_hash"]

T = TypeVar("T")

#: hex characters of a file or folder hash (the length of every fingerprint)
_HASH_HEX = 16
_CHUNK = 1 << 20


def _hasher(algorithm: str) -> Any:
    try:
        return hashlib.new(algorithm)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"unknown hash algorithm {algorithm!r}; use one of hashlib's, e.g. 'sha256'"
        ) from exc


def _update_with_file(h: Any, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def file_hash(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """The first 16 hex characters of the content hash of the file ``path``.

    Raises:
        ValidationError: ``path`` is not a readable file, or an unknown algorithm.
    """
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"file_hash({os.fspath(path)!r}): no such file")
    h = _hasher(algorithm)
    _update_with_file(h, p)
    return str(h.hexdigest()[:_HASH_HEX])


def dir_hash(
    path: str | os.PathLike[str], pattern: str = "*", algorithm: str = "sha256"
) -> str:
    """A 16-hex hash of the files under ``path`` matching ``pattern`` (recursively).

    It covers each file's path relative to ``path`` and its content, in
    sorted order, so renaming, adding or changing a file changes it and
    moving the folder does not.

    Raises:
        ValidationError: ``path`` is not a folder, or an unknown algorithm.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValidationError(f"dir_hash({os.fspath(path)!r}): no such folder")
    h = _hasher(algorithm)
    for member in sorted(p for p in root.rglob(pattern) if p.is_file()):
        h.update(member.relative_to(root).as_posix().encode("utf-8") + b"\0")
        _update_with_file(h, member)
        h.update(b"\0")
    return str(h.hexdigest()[:_HASH_HEX])


def _fingerprint(self: Any) -> str:
    return context_fingerprint(self)


@overload
def context_spec(cls: type[T], /) -> type[T]: ...


@overload
def context_spec(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


def context_spec(cls: Any = None, /, *, frozen: bool = True) -> Any:
    """``@context_spec`` / ``@context_spec(frozen=True)``: a dataclass context with ``.fingerprint``.

    Raises:
        ValidationError: the class already has a ``fingerprint`` attribute or field.
    """

    def wrap(c: type[T]) -> type[T]:
        if "fingerprint" in getattr(c, "__annotations__", {}) or hasattr(c, "fingerprint"):
            raise ValidationError(
                f"@context_spec class {c.__qualname__} must not define 'fingerprint' (the "
                "decorator adds it)"
            )
        dc = dataclasses.dataclass(frozen=frozen)(c)
        dc.fingerprint = property(_fingerprint, doc="The context's fingerprint, as the runner computes it.")  # type: ignore[attr-defined]
        return dc

    return wrap if cls is None else wrap(cls)
