"""The catch-up journal: what tells the index it may be behind the files.

The changes themselves are logged once, by the FileStore, in the ``.changes/``
logs of each experiment folder (:mod:`metalab.store._changes`).  The catch-up
follows those logs with an offset per log, as the query catalog does, and
reads again just the files they name.  The journal holds the rest, under
``{file_root}/.metalab-index/{index_key}/`` (one folder per index target:
host, port, database, schema)::

    target.json                 host/port/db/schema of the index (no user, no password)
    inflight/{host}-{pid}-{token}.log
                                experiments a live process has changes of not yet sent
    behind/{exp}.json           the index may miss changes of the experiment past its offsets
    dirty/{exp}.json            the whole experiment must be re-synced (files listed)
    dirty/_all.json             every experiment must be re-synced
    offsets/{exp}.json          how far the logs of the experiment are known to be indexed
    locks/{exp}.lock            held (``flock``) while a process catches the experiment up

In-flight logs are the "batches not yet sent": a process's background flusher
(``_flusher``) appends a line ``{"e": experiment, "l": change-log name, "i":
its header id, "p": byte position}`` *before* the first file write of an
experiment it has no unsettled change of; every change-log line of its
unsettled changes of that experiment lies at or past that position.  When its
oldest unsettled batch is settled it appends a new line with the position of
the next one (the last line of an experiment counts), and it empties the log
once every change is settled: sent, or (if sending failed) covered by a
``behind`` mark written first.  The owner holds an exclusive ``flock`` on its
log while it lives.  A log nobody holds a lock on belongs to a process that
died before flushing: :meth:`Journal.adopt_orphans` (run by every catch-up)
marks its experiments ``behind`` and deletes it.

Offsets.  A catch-up of an experiment marked ``behind`` claims the mark,
reads the logs past the stored offsets, re-reads the files they name (or lists
the folders when the logs cannot vouch for every change) and stores where the
logs ended.  When nothing marks the experiment, the offsets are moved without
reading anything (:meth:`Journal.lock` + ``PostgresStore._advance``) to the
ends of the logs, or to the first position an in-flight log lists: a writer
lists its position before its file write, so a line before every listed
position and the ends (taken first) was sent, or is covered by a ``behind``
mark (read after the in-flight logs).  (Writes made without this journal, by
a plain FileStore or another tool, reach the index through
:meth:`PostgresStore.reconcile` with ``full=True``.)

Every file is written atomically (temp file + rename); a ``behind`` mark is
claimed by renaming, under the experiment's lock, so several processes can
catch up at once and each change is handled.  Thread/process safe.  Never
holds secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from metalab._internal._atomic import FILE_MODE, TMP_PREFIX, atomic_write_bytes
from metalab._internal._json import dumps, dumps_pretty, loads
from metalab._internal._names import safe_experiment_id
from metalab._internal._time import to_iso, utcnow
from metalab.store._changes import LogState

__all__ = ["ALL", "BehindClaim", "InflightLog", "Journal", "LogOffsets"]

ALL = "_all"
_CLAIM = ".claimed-"
#: seconds :meth:`Journal.has_orphans` keeps its answer
ORPHAN_CHECK_INTERVAL = 5.0


def _exp_key(experiment_id: str) -> str:
    digest = hashlib.sha256(experiment_id.encode()).hexdigest()[:12]
    return f"{safe_experiment_id(experiment_id)[:60]}-{digest}"


@dataclass(frozen=True)
class LogOffsets:
    """How far the change logs of one experiment are in the index.

    ``logs``: per log name, its :data:`~metalab.store._changes.LogState`;
    ``seen``: the folder mtimes seen then (see :func:`~metalab.store._changes.read_changes`).
    """

    logs: dict[str, LogState]
    seen: dict[str, str]


@dataclass(frozen=True)
class BehindClaim:
    """The ``behind`` marks of one experiment taken by a catch-up.

    ``runs``: run ids to read again whatever the logs say (their files were
    unreadable at the last catch-up).
    """

    experiment_id: str
    paths: tuple[str, ...]
    runs: frozenset[str]


class Journal:
    """The journal of one index target under one file root."""

    def __init__(self, file_root: str, index_key: str, target: dict[str, Any]) -> None:
        self.folder = os.path.join(file_root, ".metalab-index", index_key)
        self._dirty = os.path.join(self.folder, "dirty")
        self._inflight = os.path.join(self.folder, "inflight")
        self._behind = os.path.join(self.folder, "behind")
        self._offsets = os.path.join(self.folder, "offsets")
        self._locks = os.path.join(self.folder, "locks")
        self._orphans = False
        self._orphans_until = 0.0
        self._target = target
        self._target_written = False

    def _write_target(self) -> None:
        if self._target_written:
            return
        path = os.path.join(self.folder, "target.json")
        if not os.path.exists(path):
            atomic_write_bytes(path, dumps_pretty(self._target))
        self._target_written = True

    # -------------------------------------------------------------- in-flight logs
    def open_inflight_log(self) -> InflightLog:
        """A new in-flight log owned (locked) by this process.

        Raises:
            OSError: the journal folder cannot be written.
        """
        self._write_target()
        name = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}.log"
        return InflightLog(os.path.join(self._inflight, name))

    def _orphan_logs(self, non_empty: bool) -> Iterator[tuple[str, int]]:
        """``(path, fd)`` of logs whose owner is gone; the caller closes ``fd``
        (which holds the lock) after handling the log."""
        try:
            with os.scandir(self._inflight) as it:
                entries = sorted(
                    (e for e in it if e.name.endswith(".log")), key=lambda e: e.name
                )
        except FileNotFoundError:
            return
        for entry in entries:
            path = entry.path
            if non_empty:
                try:
                    if entry.stat().st_size == 0:
                        continue
                except FileNotFoundError:
                    continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its owner is alive
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # another process adopted it meanwhile
                os.close(fd)
                continue
            yield path, fd

    def adopt_orphans(self) -> int:
        """Mark ``behind`` the experiments of orphaned in-flight logs, delete the logs.

        Returns the number of experiments marked.  Safe to run in several
        processes at once (the log's lock hands each log to one of them).
        """
        count = 0
        for path, fd in self._orphan_logs(non_empty=False):
            try:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    data = fh.read()
                experiments: set[str] = set()
                for line in data.splitlines():
                    try:
                        doc = loads(line)
                    except ValueError:
                        continue  # a line cut short by the crash
                    if isinstance(doc, dict) and isinstance(doc.get("e"), str):
                        experiments.add(doc["e"])
                for eid in sorted(experiments):
                    self.mark_behind(eid)
                count += len(experiments)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)
        self._orphans_until = 0.0
        return count

    def has_orphans(self) -> bool:
        """True if an orphaned in-flight log lists experiments.

        The answer is kept for :data:`ORPHAN_CHECK_INTERVAL` seconds (a scan
        opens every busy log; orphans only appear when a process dies).
        """
        now = time.monotonic()
        if now < self._orphans_until:
            return self._orphans
        found = False
        for _path, fd in self._orphan_logs(non_empty=True):
            os.close(fd)
            found = True
        self._orphans, self._orphans_until = found, now + ORPHAN_CHECK_INTERVAL
        return found

    def in_flight(self, experiment_id: str | None) -> bool:
        """True if a non-empty in-flight log (of any process) lists ``experiment_id``.

        ``None``: lists anything.  Logs are emptied by their owner once every
        change is settled, so this is False soon after the writers of the
        experiment went idle.
        """
        needle = None if experiment_id is None else b'"e":' + dumps(experiment_id)
        for data in self._inflight_logs():
            if needle is None or needle + b"}" in data or needle + b"," in data:
                return True
        return False

    def _inflight_logs(self) -> Iterator[bytes]:
        """The content of every non-empty in-flight log (live or orphaned)."""
        try:
            with os.scandir(self._inflight) as it:
                paths = [e.path for e in it if e.name.endswith(".log")]
        except FileNotFoundError:
            return
        for path in paths:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                continue
            if data:
                yield data

    def inflight_positions(self, experiment_id: str) -> dict[str, list[tuple[str, int]]] | None:
        """Where the unsent changes of ``experiment_id`` lie in its change logs.

        Per change-log name, the (log id, byte position) listed by each
        in-flight log naming the experiment (its last line for it): every
        change-log line of that process's unsettled changes is at or past it,
        in the log of that id.  None if a listing gives no position.
        """
        out: dict[str, list[tuple[str, int]]] = {}
        needle = b'"e":' + dumps(experiment_id)
        for data in self._inflight_logs():
            if needle not in data:
                continue
            last: Any = None
            for line in data.splitlines():
                try:
                    doc = loads(line)
                except ValueError:
                    continue  # a line being written or cut short: an earlier one holds
                if isinstance(doc, dict) and doc.get("e") == experiment_id:
                    last = doc
            if last is None:
                continue
            name, lid, pos = last.get("l"), last.get("i"), last.get("p")
            if not (isinstance(name, str) and isinstance(lid, str) and isinstance(pos, int)):
                return None
            out.setdefault(name, []).append((lid, pos))
        return out

    # -------------------------------------------------------------- behind marks
    def _behind_path(self, experiment_id: str) -> str:
        return os.path.join(self._behind, f"{_exp_key(experiment_id)}.json")

    def mark_behind(self, experiment_id: str, runs: list[str] | None = None) -> None:
        """Note that the index may miss changes of ``experiment_id`` past its offsets.

        Call it after the file writes it covers (their log lines come first).
        ``runs``: run ids to read again at the next catch-up whatever the
        logs say.  An unclaimed mark already there covers the new changes
        (a catch-up claims it before reading the logs), so it is kept as is.

        Raises:
            OSError: the journal folder cannot be written.
        """
        path = self._behind_path(experiment_id)
        if not runs and os.path.exists(path):
            return
        self._write_target()
        keep: set[str] = set(runs or ())
        if keep:  # the runs an existing mark names stay named
            with contextlib.suppress(OSError, ValueError):
                doc = _read(path)
                if isinstance(doc, dict) and isinstance(doc.get("runs"), list):
                    keep.update(r for r in doc["runs"] if isinstance(r, str))
        doc = {"experiment_id": experiment_id, "at": to_iso(utcnow()), "runs": sorted(keep)}
        atomic_write_bytes(path, dumps(doc), durable=False)

    def behind_experiments(self) -> list[str]:
        """Experiments with a ``behind`` mark (claimed ones included)."""
        out: set[str] = set()
        for entry in _entries(self._behind):
            try:
                doc = _read(entry.path)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("experiment_id"), str):
                out.add(doc["experiment_id"])
        return sorted(out)

    def claim_behind(self, experiment_id: str) -> BehindClaim | None:
        """Take the ``behind`` mark of ``experiment_id``; None if there is none.

        Call it holding :meth:`lock` of the experiment, before reading its
        logs.  Marks claimed by a catch-up that died are taken over (under
        the lock no other catch-up can hold them).
        """
        base = self._behind_path(experiment_id)
        prefix = os.path.basename(base)
        paths: list[str] = []
        runs: set[str] = set()
        token = secrets.token_hex(4)
        for entry in _entries(self._behind):
            if not entry.name.startswith(prefix):
                continue
            claimed = f"{base}{_CLAIM}{token}" if entry.name == prefix else entry.path
            try:
                if claimed != entry.path:
                    os.rename(entry.path, claimed)
                doc = _read(claimed)
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                doc = {}  # an unreadable mark still says "behind"
            if isinstance(doc, dict) and isinstance(doc.get("runs"), list):
                runs.update(r for r in doc["runs"] if isinstance(r, str))
            paths.append(claimed)
        if not paths:
            return None
        return BehindClaim(experiment_id, tuple(paths), frozenset(runs))

    @staticmethod
    def done(claim: BehindClaim | None) -> None:
        """The claimed changes are in the index: drop the claimed marks."""
        for path in claim.paths if claim is not None else ():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def release(self, claim: BehindClaim | None) -> None:
        """Give claimed marks back (the catch-up failed)."""
        if claim is None:
            return
        base = self._behind_path(claim.experiment_id)
        for path in claim.paths:
            if os.path.exists(base):  # marked again meanwhile: the new mark covers it,
                # save for the runs to read again
                if claim.runs:
                    self.mark_behind(claim.experiment_id, sorted(claim.runs))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, base)

    # -------------------------------------------------------------- dirty marks
    def mark_dirty(self, experiment_id: str | None) -> None:
        """Note that a whole experiment (``None``: all of them) must be re-synced."""
        self._write_target()
        key = ALL if experiment_id is None else _exp_key(experiment_id)
        atomic_write_bytes(
            os.path.join(self._dirty, f"{key}.json"),
            dumps({"experiment_id": experiment_id, "at": to_iso(utcnow())}),
        )

    def clear_dirty(self, experiment_id: str | None) -> None:
        key = ALL if experiment_id is None else _exp_key(experiment_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._dirty, f"{key}.json"))

    def dirty_experiments(self) -> list[str | None]:
        """Experiments marked dirty (``None`` stands for "all")."""
        out: list[str | None] = []
        for entry in sorted(_entries(self._dirty), key=lambda e: e.name):
            if not entry.name.endswith(".json"):
                continue
            try:
                doc = _read(entry.path)
            except (OSError, ValueError):
                continue
            out.append(doc.get("experiment_id") if isinstance(doc, dict) else None)
        return out

    # -------------------------------------------------------------- offsets
    @contextlib.contextmanager
    def lock(self, experiment_id: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the catch-up lock of ``experiment_id`` (yields False if ``wait`` is
        False and another catch-up holds it).

        An ``flock`` on ``locks/{exp}.lock``: exclusive between processes and
        between threads (each takes its own descriptor); released when the
        holder dies.

        Raises:
            OSError: the journal folder cannot be written.
        """
        os.makedirs(self._locks, exist_ok=True)
        fd = os.open(os.path.join(self._locks, f"{_exp_key(experiment_id)}.lock"),
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def read_offsets(self, experiment_id: str) -> LogOffsets | None:
        """The stored offsets of ``experiment_id``; None if none (or unreadable)."""
        try:
            doc = _read(os.path.join(self._offsets, f"{_exp_key(experiment_id)}.json"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("experiment_id") != experiment_id:
            return None
        try:
            logs = {str(n): (str(s[0]), int(s[1]), int(s[2])) for n, s in doc["logs"].items()}
            seen = {str(k): str(v) for k, v in doc["seen"].items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None
        return LogOffsets(logs, seen)

    def write_offsets(self, experiment_id: str, offsets: LogOffsets) -> None:
        """Store ``offsets`` (hold :meth:`lock`).

        Raises:
            OSError: the journal folder cannot be written.
        """
        self._write_target()
        doc = {"experiment_id": experiment_id, "at": to_iso(utcnow()),
               "logs": {n: list(s) for n, s in sorted(offsets.logs.items())},
               "seen": offsets.seen}
        atomic_write_bytes(os.path.join(self._offsets, f"{_exp_key(experiment_id)}.json"),
                           dumps(doc), durable=False)

    # -------------------------------------------------------------- reading
    def is_behind(self, experiment_id: str | None) -> bool:
        """True if the index may miss changes of ``experiment_id`` (``None``: of any).

        Counts changes still in flight in any process (live or dead, this one
        included), ``behind`` and dirty marks.  The in-flight logs are read
        first: an experiment leaves a log only once its changes are in the
        index or marked, so no change slips between the two looks.
        """
        return self.in_flight(experiment_id) or self.has_backlog(experiment_id, orphans=False)

    def has_backlog(self, experiment_id: str | None, *, orphans: bool = True) -> bool:
        """True if ``behind`` marks, dirty marks (or, with ``orphans``, orphaned
        in-flight logs) name ``experiment_id`` (``None``: any experiment)."""
        dirty = {e.name for e in _entries(self._dirty)}
        if experiment_id is None:
            if dirty or _has_entries(self._behind):
                return True
            return orphans and self.has_orphans()
        key = _exp_key(experiment_id)
        if f"{ALL}.json" in dirty or f"{key}.json" in dirty:
            return True
        if any(e.name.startswith(f"{key}.json") for e in _entries(self._behind)):
            return True
        return orphans and self.has_orphans()

    def needs_catch_up(self, experiment_id: str | None) -> bool:
        """True if a catch-up of a store scoped to ``experiment_id`` (``None``:
        unscoped) has work: ``behind`` marks of any experiment, orphaned
        in-flight logs, or a dirty mark of an experiment of the scope."""
        if _has_entries(self._behind) or self.has_orphans():
            return True
        return any(e is not None and (experiment_id is None or e == experiment_id)
                   for e in self.dirty_experiments())


def _read(path: str) -> Any:
    with open(path, "rb") as fh:
        return loads(fh.read())


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(TMP_PREFIX)]
    except FileNotFoundError:
        return []


def _has_entries(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(TMP_PREFIX) for e in it)
    except FileNotFoundError:
        return False


class InflightLog:
    """The experiments a process has changes of not yet sent, locked by its owner.

    Not thread-safe by itself (the flusher calls it under its lock).  After
    ``fork`` the child must call :meth:`forget` so the parent's lock is not
    kept alive by the child's copy of the descriptor.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self.size = 0

    def note(self, experiment_id: str, position: tuple[str, str, int] | None) -> None:
        """List ``experiment_id`` with ``position`` (change-log name, id, byte
        position; None: unknown), replacing its earlier lines.

        Raises:
            OSError: the log is closed or cannot be written.
        """
        if self._fd is None:
            raise OSError(f"in-flight log {self.path} is closed")
        doc: dict[str, Any] = {"e": experiment_id}
        if position is not None:
            doc.update(l=position[0], i=position[1], p=position[2])
        line = dumps(doc) + b"\n"
        os.write(self._fd, line)
        self.size += len(line)

    def truncate(self) -> None:
        """Forget every line (all changes are settled)."""
        if self._fd is not None and self.size:
            os.ftruncate(self._fd, 0)
            self.size = 0

    def close(self, *, remove: bool) -> None:
        """Release the lock; ``remove`` deletes the log (only when all is settled)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def forget(self) -> None:
        """Drop this process's copy of the descriptor (in a forked child)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
