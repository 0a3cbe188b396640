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
deleted, or after the run's annotations changed (its tags and note, see
:mod:`._annotations`; for every run of the experiment when the experiment's
annotations changed), ``d {run_id}`` for ``derived/``.  Each line is one ``write()`` on a
descriptor opened once per process (``O_APPEND``), so lines of concurrent
writers never interleave.  The log is a hint for its readers (the query
catalog, :mod:`metalab.store._index._catalog`, and the PostgreSQL catch-up,
:mod:`metalab.store._postgres._store`), never the truth: the line is written
*after* the rename, without fsync, and a failure to write it never fails the
record write.  A writer that could not append its line instead appends one
byte to the marker file ``.unlogged`` in the folder it wrote to (``runs/``
or ``derived/``, created if missing), which tells every reader to list that
folder once.  Markers are never removed by readers: each reader keeps the
marker's signature (inode, size, mtime) it saw before its last listing, so
several readers (the catalog, the PostgreSQL catch-up, another index on the
same files) each see every marker event, whatever the others did.

Reading (:func:`read_changes`, the one reader every follower of the logs
uses): a follower keeps, per log, a :data:`LogState` (header id, byte offset
consumed, mtime) and, per folder, the folder mtime and marker signature it
saw (:func:`folder_mtimes`).  A log is read from
its offset up to its last complete line (a torn last line is left for next
time).  The logs *cannot vouch* for every change, and the follower must list
the folders instead, when: there is no ``.changes`` folder (a store written by
an older version or another tool); a log it read before vanished, shrank or
got another header id; a ``.unlogged`` marker changed since the last listing;
or a folder changed
after the newest log line (a change made without a line: a file copied in by
rsync, removed by hand, or a writer that died between its rename and its
append).  :func:`read_changes` then returns where each log ends now, so the
lines written during the listing are read next time; the folder mtimes and
marker signatures it returns were taken before the listing, so a marker
event during the listing asks for one more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from metalab._internal._atomic import FILE_MODE, create_exclusive
from metalab._internal._owner import boot_id

__all__ = [
    "CHANGES_DIR",
    "HEADER",
    "SUBS",
    "UNLOGGED",
    "Changes",
    "LogState",
    "folder_mtimes",
    "is_line_start",
    "log_ends",
    "log_file_name",
    "log_position",
    "marker_key",
    "moved_states",
    "note_change",
    "note_changes",
    "read_changes",
    "read_log",
    "stat_logs",
]

log = logging.getLogger("metalab.store.changes")

CHANGES_DIR = ".changes"
#: first line of every log, followed by a random id and a newline
HEADER = b"metalab-changes 1 "
#: marker file created in runs/ or derived/ when a change could not be logged
UNLOGGED = ".unlogged"
_MAX_OPEN = 64
#: the folders whose changes are logged, and the letter of their lines
SUBS = ("runs", "derived")
_LINES = {
    sub: re.compile(rf"^{kind} ([^\n/\x00.][^\n/\x00]*)$", re.MULTILINE)
    for kind, sub in (("r", "runs"), ("d", "derived"))
}
#: bytes of a log's start holding its header line
_HEADER_READ = 128
#: bytes read from the end of a log to find its last complete line
_TAIL_READ = 4096
_READ_CHUNK = 1 << 20
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)

#: what a follower knows of one log: (header id, offset consumed, mtime_ns);
#: the id is "" for a file without a valid header (not a log, or one being created)
LogState = tuple[str, int, int]

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
    note_changes(folder, kind, (run_id,))


def note_changes(folder: str, kind: str, run_ids: Iterable[str]) -> None:
    """:func:`note_change` for several runs of one folder, in one append.  Never raises."""
    line = "".join(f"{kind} {run_id}\n" for run_id in run_ids).encode()
    if not line:
        return
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
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    # a new byte gives the marker a new signature for every reader; if even this
    # fails, the catalog's periodic full listing is what still finds the change
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(folder, sub, UNLOGGED), flags, FILE_MODE)
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)


def marker_key(sub: str) -> str:
    """The key of ``sub``'s marker signature in :func:`folder_mtimes`' answer."""
    return f"unlogged:{sub}"


def _marker_signature(folder: str, sub: str) -> str:
    """``{inode}-{size}-{mtime_ns}`` of ``sub``'s ``.unlogged`` marker; "none" without one."""
    try:
        st = os.stat(os.path.join(folder, sub, UNLOGGED))
    except FileNotFoundError:
        return "none"
    return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"


# ---------------------------------------------------------------- reading
def stat_logs(folder: str) -> dict[str, tuple[int, int]] | None:
    """(size, mtime_ns) of each change log of ``folder``; None without ``.changes/``."""
    out: dict[str, tuple[int, int]] = {}
    try:
        with os.scandir(os.path.join(folder, CHANGES_DIR)) as it:
            for entry in it:
                if entry.name[0] == "." or not entry.name.endswith(".log"):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out[entry.name] = (st.st_size, st.st_mtime_ns)
    except OSError:  # missing, not a folder, not readable: the logs cannot be used
        return None
    return out


def folder_mtimes(folder: str) -> dict[str, str]:
    """The mtime (ns, as text) of ``runs/`` and ``derived/`` (``"missing"`` for one
    absent), and under :func:`marker_key` the signature of each folder's
    ``.unlogged`` marker (``"none"`` without one).

    Take them *before* :func:`stat_logs` and before listing the folders: a
    line follows its rename, a marker byte follows its write.
    """
    out: dict[str, str] = {}
    for sub in SUBS:
        try:
            out[sub] = str(os.stat(os.path.join(folder, sub)).st_mtime_ns)
        except FileNotFoundError:
            out[sub] = "missing"
        out[marker_key(sub)] = _marker_signature(folder, sub)
    return out


def read_log(path: str, known: LogState | None,
             changed: dict[str, set[str]] | None) -> LogState | None:
    """Read one change log past ``known`` into ``changed`` (``{"runs": ids, "derived": ids}``).

    Returns the log's new state (id "" for a file without a valid header).
    Returns None when the log is not the one read before (other id, shorter)
    or cannot be read.  Without ``changed``, just finds where the log ends
    now (to its last complete line).  Never raises for a missing log.
    """
    try:
        fd = os.open(path, _O_READ)
    except FileNotFoundError:
        return None if known is not None and known[0] else ("", 0, 0)
    except OSError:
        return None  # unreadable: list the folders instead
    try:
        st = os.fstat(fd)
        lid, end = _header(os.read(fd, _HEADER_READ))
        if not lid:
            if known is not None and known[0]:
                return None  # it had a header before
            return ("", st.st_size, st.st_mtime_ns)
        if known is not None and known[0] == lid:
            offset = known[1]
            if st.st_size < offset:
                return None
        elif known is not None and known[0]:
            return None  # replaced by another log of the same name
        else:
            offset = end + 1  # a new log: from its first line
        if changed is None:
            offset = max(offset, st.st_size - _TAIL_READ)  # only the end of a log is needed
        os.lseek(fd, offset, os.SEEK_SET)
        parts = []
        left = st.st_size - offset  # what fstat saw; later lines are read next time
        while left > 0 and (chunk := os.read(fd, min(left, _READ_CHUNK))):
            parts.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(parts)
    cut = data.rfind(b"\n") + 1  # a torn last line is left for next time
    if changed is not None:
        text = data[:cut].decode("utf-8", "replace")  # (a newline is never inside a character)
        for sub, line_re in _LINES.items():
            changed[sub].update(line_re.findall(text))
    return (lid, offset + cut, st.st_mtime_ns)


def _header(head: bytes) -> tuple[str, int]:
    """(id, index of the header's newline) of a log starting with ``head``;
    id "" without a valid header."""
    end = head.find(b"\n")
    if end > len(HEADER) and head.startswith(HEADER):
        return head[len(HEADER):end].decode("ascii", "replace"), end
    return "", end


def log_position(folder: str) -> tuple[str, str, int]:
    """(name, header id, size) of this host's change log of ``folder`` now.

    Every line this host appends from now on lies at or past that size, as
    long as the log keeps that id.  ("name", "", 0) when there is no log yet
    or it cannot be read (then nothing is known about where lines will go).
    Never raises.
    """
    name = log_file_name()
    try:
        fd = os.open(os.path.join(folder, CHANGES_DIR, name), _O_READ)
    except OSError:
        return name, "", 0
    try:
        size = os.fstat(fd).st_size
        lid, _end = _header(os.read(fd, _HEADER_READ))
    except OSError:
        return name, "", 0
    finally:
        os.close(fd)
    return name, lid, size


def is_line_start(path: str, pos: int) -> bool:
    """True if byte ``pos`` of the log at ``path`` starts a line (follows a newline).

    Never raises (False when the log cannot be read).
    """
    if pos <= 0:
        return False
    try:
        fd = os.open(path, _O_READ)
    except OSError:
        return False
    try:
        return os.pread(fd, 1, pos - 1) == b"\n"
    except OSError:
        return False
    finally:
        os.close(fd)


def log_ends(folder: str, logs: dict[str, tuple[int, int]] | None = None) -> dict[str, LogState]:
    """Where each change log of ``folder`` ends now (its last complete line).

    ``logs``: :func:`stat_logs` of the folder if already taken.
    """
    out: dict[str, LogState] = {}
    for name in (stat_logs(folder) if logs is None else logs) or ():
        got = read_log(os.path.join(folder, CHANGES_DIR, name), None, None)
        if got is not None:
            out[name] = got
    return out


@dataclass
class Changes:
    """What :func:`read_changes` found in one experiment folder.

    ``changed``: the names (run ids) of ``runs/`` and ``derived/`` files the
    logs name past the known offsets (each to be read again, or found gone).
    ``states``: the new state of each log, to keep for next time.  ``dirs``:
    the folder mtimes and marker signatures seen (:func:`folder_mtimes`).  ``reason``: why the logs
    cannot vouch for every change (the folders must be listed; ``changed`` is
    then empty and ``states`` are where the logs end now), else None.
    """

    changed: dict[str, set[str]] = field(default_factory=lambda: {sub: set() for sub in SUBS})
    states: dict[str, LogState] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


def read_changes(folder: str, known: Mapping[str, LogState], seen: Mapping[str, str | None],
                 *, dirs: dict[str, str] | None = None,
                 logs: dict[str, tuple[int, int]] | None = None,
                 list_anyway: str | None = None) -> Changes:
    """Read the change logs of ``folder`` past ``known`` (see the module docstring).

    Args:
        folder: an experiment folder.
        known: the state of each log after the last read (empty: none read yet).
        seen: the folder mtimes and marker signatures of the last read
            (:attr:`Changes.dirs`; a key absent from it, or None, was not seen).
        dirs, logs: :func:`folder_mtimes` and :func:`stat_logs` of the folder
            if the caller already took them (in that order).
        list_anyway: the reason the follower lists the folders whatever the
            logs say (a new or overdue catalog, a full re-sync): the logs
            are then not read, only where they end now.

    Never removes anything (markers stay; see the module docstring).  Not
    thread-safe per follower: a follower serialises its own reads (the catalog
    under its lock file, the PostgreSQL catch-up under its per-experiment
    lock).  Never raises for missing files.
    """
    out = Changes(dirs=folder_mtimes(folder) if dirs is None else dirs)
    if logs is None:
        logs = stat_logs(folder)
    out.reason = list_anyway or _no_vouch(folder, known, seen, out.dirs, logs)
    if out.reason is None:
        assert logs is not None
        for name in logs:
            got = read_log(os.path.join(folder, CHANGES_DIR, name), known.get(name), out.changed)
            if got is None:
                out.reason = "a change log was replaced or truncated"
                break
            out.states[name] = got
    if out.reason is not None:
        out.changed = {sub: set() for sub in SUBS}
        out.states = log_ends(folder, logs)  # later lines are read next time
    return out


def moved_states(folder: str, ends: Mapping[str, LogState],
                 unsent: Mapping[str, list[tuple[str, int]]],
                 known: Mapping[str, LogState]) -> dict[str, LogState]:
    """``known`` with each log's offset moved to its end (``ends``, from
    :func:`log_ends`), or to the first position ``unsent`` lists in it (per
    log name, (header id, position) pairs; a log listed under another id, or
    a position not at a line start, is not moved).  Logs gone from ``ends``
    are dropped.  For a follower that knows which lines were handled without
    reading them (the PostgreSQL catch-up).
    """
    out = dict(known)
    for name, (lid, end, mtime) in ends.items():
        limit = end
        for unsent_id, pos in unsent.get(name, ()):
            limit = min(limit, pos) if unsent_id == lid else -1
        old = known.get(name)
        if limit < 0 or (limit < end and not is_line_start(
                os.path.join(folder, CHANGES_DIR, name), limit)):
            continue  # not movable now: the known offset (if any) stays
        if old is not None and old[0] == lid and old[1] >= limit:
            continue
        out[name] = (lid, limit, mtime)
    for name in known.keys() - ends.keys():
        del out[name]  # (vanished, no unsent change in it: every line was handled)
    return out


def _no_vouch(folder: str, known: Mapping[str, LogState], seen: Mapping[str, str | None],
              dirs: dict[str, str], logs: dict[str, tuple[int, int]] | None) -> str | None:
    """Why the logs cannot vouch for every change since ``known``, else None."""
    if logs is None:
        return f"no {CHANGES_DIR} folder (written by an older version or another tool)"
    if any(known[n][0] for n in known.keys() - logs.keys()):
        return "a change log vanished"
    for sub in SUBS:
        marker = dirs.get(marker_key(sub), "none")
        if marker != "none" and marker != seen.get(marker_key(sub)):
            return "a writer could not write its change log"
    newest = max((m for n, (_, m) in logs.items() if known.get(n, ("?",))[0] != ""), default=0)
    for sub in SUBS:
        d = dirs[sub]
        if d != seen.get(sub) and d != "missing" and int(d) > newest:
            return f"{sub}/ changed after the newest change log line"
    return None
