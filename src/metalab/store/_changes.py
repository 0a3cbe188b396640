"""Change logs of a FileStore experiment folder: which run files were written.

Where: ``{experiment folder}/.changes/{host}-{boot}.log`` (a hidden folder,
like ``.catalog``: not part of the store layout, ignored by every reader of
the store; ``rsync`` copies it along harmlessly, deleting it is always safe).
One file per host and boot: ``O_APPEND`` is atomic between the processes of
one host but not between NFS clients, and a new boot starts a new file (a
power failure may leave garbage at the end of the old one).

Format: a header line ``metalab-changes 1 {random id}`` (so a reader can tell
a replaced or recreated log from the one it read before), then one line per
change: ``r {run_id}`` after a file of ``runs/`` was renamed into place or
deleted, ``d {run_id}`` for ``derived/``.  Each line is one ``write()`` on a
descriptor opened once per process (``O_APPEND``), so lines of concurrent
writers never interleave.  The log is a hint for the query catalog
(:mod:`metalab.store._index._catalog`), never the truth: the line is written
*after* the rename, without fsync, and a failure to write it never fails the
record write.  A writer that could not append its line instead creates the
marker file ``.unlogged`` in the folder it wrote to (``runs/`` or
``derived/``), which tells the catalog to list that folder once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import threading

from metalab._internal._atomic import FILE_MODE, create_exclusive
from metalab._internal._owner import boot_id

__all__ = ["CHANGES_DIR", "HEADER", "UNLOGGED", "log_file_name", "note_change"]

log = logging.getLogger("metalab.store.changes")

CHANGES_DIR = ".changes"
#: first line of every log, followed by a random id and a newline
HEADER = b"metalab-changes 1 "
#: marker file created in runs/ or derived/ when a change could not be logged
UNLOGGED = ".unlogged"
_MAX_OPEN = 64

_lock = threading.Lock()
_fds: dict[str, int] = {}  # experiment folder -> descriptor of this host's log
_pid = os.getpid()
_reported: set[str] = set()
_name: str | None = None


def _after_fork() -> None:
    global _lock, _pid
    _lock = threading.Lock()  # another thread may have held it at fork time
    _pid = os.getpid()
    for fd in _fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def log_file_name() -> str:
    """``{host}-{boot id, 8 chars}.log`` for this host (``0`` when no boot id is known)."""
    global _name
    if _name is None:
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname() or "host").lstrip(".")
        _name = f"{host or 'host'}-{boot_id()[:8] or '0'}.log"
    return _name


def _open_log(folder: str) -> int:
    changes = os.path.join(folder, CHANGES_DIR)
    path = os.path.join(changes, log_file_name())
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    os.makedirs(changes, exist_ok=True)
    # the log appears with its header already in it (False: another process of
    # this host created it meanwhile; it is opened below all the same)
    create_exclusive(path, HEADER + secrets.token_hex(8).encode() + b"\n")
    return os.open(path, flags)


def note_change(folder: str, kind: str, run_id: str) -> None:
    """Log that ``runs/{run_id}.json`` (``kind`` "r") or ``derived/`` ("d") changed.

    Call it after the file was renamed into place (or deleted).  Never raises.
    """
    line = f"{kind} {run_id}\n".encode()
    try:
        with _lock:
            if os.getpid() != _pid:
                _after_fork()
            fd = _fds.get(folder)
            if fd is None:
                if len(_fds) >= _MAX_OPEN:
                    for old in _fds.values():
                        with contextlib.suppress(OSError):
                            os.close(old)
                    _fds.clear()
                fd = _fds[folder] = _open_log(folder)
            try:
                if os.fstat(fd).st_nlink == 0:  # the log was deleted: start a new one
                    raise OSError("change log deleted")
                os.write(fd, line)
            except OSError:
                # the log may have been deleted or replaced: reopen once and retry
                del _fds[folder]
                with contextlib.suppress(OSError):
                    os.close(fd)
                fd = _fds[folder] = _open_log(folder)
                os.write(fd, line)
    except OSError as exc:
        _unlogged(folder, kind, exc)


def _unlogged(folder: str, kind: str, exc: OSError) -> None:
    if folder not in _reported:
        _reported.add(folder)
        log.debug("cannot write the change log of %s (%s); queries will list the folder", folder,
                  exc)
    sub = "runs" if kind == "r" else "derived"
    with contextlib.suppress(OSError):
        os.close(os.open(os.path.join(folder, sub, UNLOGGED), os.O_WRONLY | os.O_CREAT, FILE_MODE))
