"""Group commit of final run records for the FileStore (mixed into :class:`FileStore`).

A durable record written alone costs one ``fsync`` (a journal commit and a
disk cache flush) per run.  A launch that executes many short runs in one
thread instead *stages* each final record (:meth:`FileGroupCommit.stage_run_record`:
the bytes go to a temp file in the record's folder, no ``fsync``) and
*commits* a group of them at once (:meth:`FileGroupCommit.commit_staged`):
one ``syncfs`` of the filesystem holding them (Linux >= 5.8 on a known local
filesystem, see :func:`syncfs_trusted`; each temp file is ``fsync``-ed instead
for a group of one, elsewhere, where ``syncfs`` fails, and while it costs
more, see :func:`sync_files`), then the renames into place, one ``fsync`` of
each ``runs/`` folder renamed into (POSIX), then one change-log line block
per folder.  So the bytes of every record are on disk before its name
points to them, as with :meth:`FileStore.put_run_record`, and the names
too before any run is reported done.

What a crash leaves: before the renames, temp files (``.tmp-*``, which
readers skip) and no record: the run is executed again on resume.  During
the renames, the renamed records are complete and durable, the others as
before.  The caller reports a run done only after :meth:`commit_staged`
returned no error for it (see :mod:`metalab.execution._commit`).

Thread/process safety: staged records are plain files; several threads or
processes may stage and commit concurrently (each commit syncs and renames
only its own temp files; ``syncfs`` also flushes other writers' data).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metalab._internal._atomic import temp_path, write_new_file
from metalab._internal._json import dumps
from metalab.store._changes import note_changes

if TYPE_CHECKING:
    from metalab.model import RunRecord

__all__ = ["FileGroupCommit", "StagedRecord", "sync_files"]

log = logging.getLogger("metalab.store")

_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_WRITE = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class StagedRecord:
    """A final record written to a temp file, waiting for :meth:`FileGroupCommit.commit_staged`.

    Attributes:
        run_id: the run.  folder: its experiment folder.
        tmp: the temp file holding the record.  target: the record's path.
    """

    run_id: str
    folder: str
    tmp: str
    target: str


def _load_libc() -> ctypes.CDLL | None:
    """The C library (Linux), or None: elsewhere, or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except Exception as exc:  # (OSError, TypeError, ... depending on the platform)
        log.debug("libc not loaded (%s): records are fsynced one by one", exc)
        return None


def _libc_function(libc: ctypes.CDLL | None, name: str, argtypes: list[Any]) -> Any:
    if libc is None:
        return None
    try:
        fn = getattr(libc, name)
    except AttributeError:
        log.debug("libc has no %s: records are fsynced one by one", name)
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


_LIBC = _load_libc()
_SYNCFS = _libc_function(_LIBC, "syncfs", [ctypes.c_int])
_STATFS = _libc_function(_LIBC, "statfs", [ctypes.c_char_p, ctypes.c_void_p])

#: first Linux version whose ``syncfs`` reports write-back errors (before, it returns 0
#: even when the data never reached the disk)
_SYNCFS_REPORTS_ERRORS = (5, 8)
#: ``statfs`` ``f_type`` of local filesystems whose ``syncfs`` flushes their data
#: (on FUSE or network filesystems it may not reach the server): ext2/3/4, xfs,
#: btrfs, tmpfs
_LOCAL_FS_TYPES = frozenset({0xEF53, 0x58465342, 0x9123683E, 0x01021994})
#: bytes of the buffer handed to ``statfs`` (more than any ``struct statfs``)
_STATFS_BUF = 512


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a Linux release string such as ``"5.15.0-91-generic"``; (0, 0)
    when it cannot be read."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "0")
    except (IndexError, ValueError):
        return (0, 0)


_KERNEL = kernel_version(platform.release()) if sys.platform.startswith("linux") else (0, 0)


def fs_type(folder: str) -> int | None:
    """``statfs`` ``f_type`` of the filesystem holding ``folder``; None where unknown."""
    if _STATFS is None:
        return None
    buf = ctypes.create_string_buffer(_STATFS_BUF)
    if _STATFS(os.fsencode(folder), buf) != 0:
        return None
    # (f_type is the first field of struct statfs, a word on every Linux ABI)
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


@functools.lru_cache(maxsize=256)
def syncfs_trusted(folder: str) -> bool:
    """True if one ``syncfs`` makes the files of ``folder`` durable and reports its
    failures: Linux >= 5.8 and a known local filesystem (checked once per folder).
    Otherwise the files are fsynced one by one."""
    if _SYNCFS is None or _KERNEL < _SYNCFS_REPORTS_ERRORS:
        return False
    return fs_type(folder) in _LOCAL_FS_TYPES


def _syncfs(folder: str) -> None:
    """``syncfs`` of the filesystem holding ``folder``.

    Raises:
        OSError: no ``syncfs`` here, or it failed (Linux >= 5.8 reports write-back
            errors of any file of the filesystem, not only ours).
    """
    if _SYNCFS is None:
        raise OSError("syncfs is not available")
    fd = os.open(folder, _READ)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), folder)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    # (opened for writing: Windows refuses to flush a file opened read-only)
    fd = os.open(path, _WRITE)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    """fsync ``folder`` so the renames into it survive a power loss (POSIX; where a
    folder cannot be opened, as on Windows, the renames are as durable as the OS makes
    them).  A failure is logged: the records are in place, their names may not survive."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, _READ)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("the folder %s could not be fsynced (%s): its newest records may "
                    "not survive a power loss", folder, exc)


class _SyncCosts:
    """Recent seconds of one ``syncfs`` and of one file's ``fsync`` (moving averages).

    ``syncfs`` writes back every dirty file of the filesystem, so while other
    programs write a lot it can cost more than fsyncing a group's files one
    by one; :func:`sync_files` then fsyncs them.  The ``syncfs`` figure decays
    while it is not used, so it is tried again now and then.
    """

    syncfs_s: float | None = None
    fsync_s: float | None = None
    lock = threading.Lock()

    @classmethod
    def note(cls, attr: str, seconds: float) -> None:
        with cls.lock:
            old = getattr(cls, attr)
            setattr(cls, attr, seconds if old is None else old + _COST_WEIGHT * (seconds - old))

    @classmethod
    def prefer_syncfs(cls, files: int) -> bool:
        if _SYNCFS is None or files < 2:
            return False
        with cls.lock:
            if cls.syncfs_s is None or cls.fsync_s is None:
                return True
            if cls.syncfs_s <= files * cls.fsync_s:
                return True
            cls.syncfs_s *= _UNUSED_DECAY
            return False


#: weight of the newest measurement in the moving averages of :class:`_SyncCosts`
_COST_WEIGHT = 0.3
#: factor applied to the ``syncfs`` estimate each time it was not chosen
_UNUSED_DECAY = 0.95


def _fsync_each(files: Sequence[str], failed: dict[str, OSError]) -> None:
    t0 = time.perf_counter()
    done = 0
    for path in files:
        try:
            _fsync_file(path)
            done += 1
        except OSError as exc:
            failed[path] = exc
    if done:
        _SyncCosts.note("fsync_s", (time.perf_counter() - t0) / done)


def sync_files(paths: Sequence[str]) -> dict[str, OSError]:
    """Make the contents of ``paths`` (files written, not yet fsynced) durable.

    One ``syncfs`` per filesystem (folder device) holding them, or each file
    fsynced on its own: for a single file, where ``syncfs`` is missing or
    fails, and while recent ``syncfs`` calls cost more than fsyncing the
    files one by one (see :class:`_SyncCosts`).  Returns the files that could
    not be made durable, with the error (empty: all are).  Never raises.
    """
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    by_dev: dict[int, list[str]] = {}
    failed: dict[str, OSError] = {}
    for folder, files in by_folder.items():
        try:
            dev = os.stat(folder).st_dev
        except OSError as exc:
            failed.update(dict.fromkeys(files, exc))
            continue
        by_dev.setdefault(dev, []).extend(files)
    for group in by_dev.values():
        if syncfs_trusted(os.path.dirname(group[0])) and _SyncCosts.prefer_syncfs(len(group)):
            t0 = time.perf_counter()
            try:
                _syncfs(os.path.dirname(group[0]))
                _SyncCosts.note("syncfs_s", time.perf_counter() - t0)
                continue
            except OSError as exc:
                log.debug("syncfs failed (%s); fsyncing %d files one by one", exc, len(group))
        _fsync_each(group, failed)
    return failed


class FileGroupCommit:
    """The group-commit methods of :class:`~metalab.store.FileStore` (a mixin: it uses
    the store's ``_record_target(record)`` and ``_ensure_meta()``).  Guarded like the
    store's other writes (a read-only store refuses them)."""

    if TYPE_CHECKING:  # provided by FileStore
        def _record_target(self, record: RunRecord) -> tuple[str, str]: ...

        def _ensure_meta(self) -> None: ...

    def stage_run_record(self, record: RunRecord) -> StagedRecord:
        """Write ``record`` to a temp file next to its record file, without ``fsync``.

        Nothing is visible to readers until :meth:`commit_staged`; call
        :meth:`discard_staged` to give it up.  Raises what
        :meth:`FileStore.put_run_record` raises (``ScopeError``, OSError such
        as ENOSPC: then no temp file is left).
        """
        folder, target = self._record_target(record)
        self._ensure_meta()
        data = dumps(record.to_dict())
        tmp = temp_path(target)
        write_new_file(tmp, data, durable=False)
        return StagedRecord(record.run_id, folder, tmp, target)

    def commit_staged(self, staged: Sequence[StagedRecord]) -> list[OSError | None]:
        """Make ``staged`` records durable, then rename each into place (see the module).

        Returns one entry per staged record: None when its record file is in
        place and durable, else the error (its temp file is then removed and
        the store holds what it held before).  Never raises for an I/O error.
        Thread-safe; records of one run must not be committed twice.
        """
        failed = sync_files([s.tmp for s in staged])
        out: list[OSError | None] = []
        renamed: dict[str, list[str]] = {}
        runs_folders: set[str] = set()
        for s in staged:
            err = failed.get(s.tmp)
            if err is None:
                try:
                    os.replace(s.tmp, s.target)
                    renamed.setdefault(s.folder, []).append(s.run_id)
                    runs_folders.add(os.path.dirname(s.target))
                except OSError as exc:
                    err = exc
            if err is not None:
                with contextlib.suppress(OSError):
                    os.unlink(s.tmp)
            out.append(err)
        for folder in runs_folders:
            _fsync_folder(folder)  # the renames, before any run is reported done
        for folder, run_ids in renamed.items():
            note_changes(folder, "r", run_ids)  # after the renames (see _changes)
        return out

    def discard_staged(self, staged: Sequence[StagedRecord]) -> None:
        """Remove the temp files of ``staged`` records that will not be committed."""
        for s in staged:
            with contextlib.suppress(OSError):
                os.unlink(s.tmp)
