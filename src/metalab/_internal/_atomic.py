"""Atomic, durable file writes.

Every file metalab writes goes through :func:`atomic_write_bytes`: the bytes go
to a temp file in the *same* folder, are fsynced where the file must survive a
power loss, and the temp file is renamed over the target.  A reader sees
either the old file or the new one, never a half-written one, and a crash
leaves at most a stray ``.tmp-*`` file that readers ignore.  Rename is
atomic on POSIX filesystems including NFS.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

__all__ = [
    "FILE_MODE",
    "TMP_PREFIX",
    "atomic_copy_file",
    "atomic_write_bytes",
    "create_exclusive",
    "fsync_dir",
    "is_temp_name",
    "open_in_folder",
    "temp_path",
    "write_all",
    "write_new_file",
]

TMP_PREFIX = ".tmp-"
#: permissions of every file metalab creates (before the umask): owner writes, all read
FILE_MODE = 0o644
#: bytes read and written at a time by :func:`atomic_copy_file`
_COPY_CHUNK = 1 << 20


def is_temp_name(name: str) -> bool:
    """True for names of in-flight temp files, which readers must skip."""
    return name.startswith(TMP_PREFIX)


def temp_path(path: str) -> str:
    """A unique temp file name for ``path``, in the same folder (readers skip it)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f"{TMP_PREFIX}{tail}.{secrets.token_hex(4)}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename).

    Creates the parent folder if needed (tried only when the temp file
    cannot be created, so a write to an existing folder costs no extra
    system call).  With ``durable=True`` the temp file is fsynced before
    the rename, so after a power loss ``path`` holds the old or the new
    bytes, never unwritten ones; the folder is not fsynced (see
    :func:`fsync_dir`), so the rename itself may still be undone by a power
    loss.  ``durable=False`` skips the fsync: for files that are re-created
    when lost (``running`` records, heartbeats, caches); a reader still
    never sees a partial file while the machine is up (``kill -9`` included).
    Thread- and process-safe: concurrent writers of one path each rename a
    complete file; the last rename wins.

    Raises:
        OSError: the folder cannot be written.
    """
    target = os.fspath(path)
    tmp = temp_path(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: errors of ``link`` meaning "this filesystem has no hard links"
_NO_LINKS = frozenset(
    e for e in (getattr(errno, n, None) for n in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"))
    if e is not None
)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def open_in_folder(path: str, flags: int) -> int:
    """``os.open(path, flags, FILE_MODE)``, making ``path``'s folder first if it is missing.

    The folder is made only after the open fails (it nearly always exists),
    so the common case costs one system call.

    Raises:
        OSError: as ``os.open`` (``FileExistsError`` with ``O_EXCL``, ...).
    """
    try:
        return os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, flags, FILE_MODE)


def create_exclusive(path: str, data: bytes, *, durable: bool = True, in_place: bool = False) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; False if it does.

    The file appears whole: ``data`` goes to a temp file in the same folder
    (fsynced unless ``durable=False``), which is then hard-linked into place
    (``link`` fails if the target exists, so two creators never overwrite
    each other) and removed.  The parent folder is created if missing.  On a
    filesystem without hard links the target itself is created with
    ``O_EXCL`` and written (still exclusive, but a reader may see it empty
    for an instant).  Whatever fails, nothing created here is left behind:
    the temp file (or the half-written target) is removed before the error
    propagates.  Thread- and process-safe.

    ``in_place=True`` always creates the target itself with ``O_EXCL`` and
    writes it (one file created instead of two, for small files written on a
    hot path whose readers treat an empty file as being written, such as
    claims).

    Raises:
        OSError: the folder cannot be written (ENOSPC, EACCES, ...).
    """
    if in_place:
        return _create_in_place(path, data, durable)
    if os.path.exists(path):
        return False
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            return _create_in_place(path, data, durable)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _create_in_place(path: str, data: bytes, durable: bool) -> bool:
    """``create_exclusive`` without hard links: O_EXCL create, write, remove on failure."""
    try:
        write_new_file(path, data, durable=durable)
    except FileExistsError:
        return False
    return True


def write_new_file(path: str, data: bytes, *, durable: bool) -> None:
    """Create ``path`` (``O_EXCL``, making its folder if missing) holding ``data``,
    fsynced if ``durable``; on any failure after the create the file is removed.

    Raises:
        FileExistsError: ``path`` exists.  OSError: it cannot be written (ENOSPC, ...).
    """
    fd = open_in_folder(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def atomic_copy_file(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, durable: bool = True
) -> int:
    """Copy ``src`` to ``dst`` atomically; returns the number of bytes copied."""
    target = os.fspath(dst)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = temp_path(target)
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while chunk := fin.read(_COPY_CHUNK):
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            if durable:
                os.fsync(fout.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder so a completed rename survives a power loss (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
