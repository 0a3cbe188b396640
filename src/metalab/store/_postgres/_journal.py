"""The catch-up journal: what the index still has to learn from the files.

Lives beside the FileStore, under ``{file_root}/.metalab-index/{index_key}/``
(one folder per index target: host, port, database, schema)::

    target.json                     host/port/db/schema of the index (no user, no password)
    pending/{exp}/{item}.json       one item per run (or manifest set) to re-sync
    dirty/{exp}.json                the whole experiment must be re-synced
    dirty/_all.json                 every experiment must be re-synced

An item says *which* thing changed, never its content: catching up re-reads
the files, so replaying an item twice or late is harmless.  Items are written
atomically (temp file + rename) and claimed by renaming, so several processes
can catch up at once without two of them handling the same item.

In-flight logs (``inflight/{host}-{pid}-{token}.log``) name the changes a
process's background flusher (``_flusher``) is about to send to the index
itself: one JSON line per change, appended (no file creation per change, so
it is cheap).  The owner holds an exclusive ``flock`` on its log while it
lives and empties it whenever everything listed is settled (sent, or turned
into pending items).  A log nobody holds a lock on belongs to a process that
died before flushing: :meth:`Journal.adopt_orphans` (run by every catch-up)
turns its lines into pending items and deletes it.  A non-empty log, live or
not, means the index may miss the changes it names (:meth:`Journal.in_flight`),
so readers use the files meanwhile.

Thread/process safe.  Never holds secrets.
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

__all__ = ["ALL", "InflightLog", "Journal", "PendingItem"]

ALL = "_all"
_CLAIM = ".claimed-"
#: seconds :meth:`Journal.has_orphans` keeps its answer
ORPHAN_CHECK_INTERVAL = 5.0
#: a claim older than this was left by a process that died; it is taken over
STALE_CLAIM_SECONDS = 300.0


def _exp_key(experiment_id: str) -> str:
    digest = hashlib.sha256(experiment_id.encode()).hexdigest()[:12]
    return f"{safe_experiment_id(experiment_id)[:60]}-{digest}"


@dataclass(frozen=True)
class PendingItem:
    """One claimed journal item (``kind`` is ``"run"`` or ``"manifests"``)."""

    experiment_id: str
    kind: str
    run_id: str | None
    path: str


class Journal:
    """The journal of one index target under one file root."""

    def __init__(self, file_root: str, index_key: str, target: dict[str, Any]) -> None:
        self.folder = os.path.join(file_root, ".metalab-index", index_key)
        self._pending = os.path.join(self.folder, "pending")
        self._dirty = os.path.join(self.folder, "dirty")
        self._inflight = os.path.join(self.folder, "inflight")
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

    # -------------------------------------------------------------- writing
    def mark(self, experiment_id: str, kind: str, run_id: str | None = None) -> None:
        """Note that ``run_id`` (or the manifests) of ``experiment_id`` must be re-synced."""
        self._write_target()
        name = hashlib.sha256(f"{kind}\x00{run_id}".encode()).hexdigest()[:24]
        doc = {"experiment_id": experiment_id, "kind": kind, "run_id": run_id,
               "at": to_iso(utcnow())}
        atomic_write_bytes(
            os.path.join(self._pending, _exp_key(experiment_id), f"{name}.json"),
            dumps(doc),
            durable=False,
        )

    # -------------------------------------------------------------- in-flight logs
    def open_inflight_log(self) -> InflightLog:
        """A new in-flight log owned (locked) by this process."""
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
        """Turn the lines of orphaned in-flight logs into pending items.

        Returns the number of items written.  Safe to run in several processes
        at once (the log's lock hands each log to one of them).
        """
        count = 0
        for path, fd in self._orphan_logs(non_empty=False):
            try:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    data = fh.read()
                seen: set[tuple[str, str, str | None]] = set()
                for line in data.splitlines():
                    try:
                        doc = loads(line)
                    except ValueError:
                        continue  # a line cut short by the crash
                    if not isinstance(doc, dict) or not isinstance(doc.get("e"), str):
                        continue
                    key = (doc["e"], str(doc.get("k") or "run"), doc.get("r"))
                    if key not in seen:
                        seen.add(key)
                        self.mark(*key)
                count += len(seen)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)
        self._orphans_until = 0.0
        return count

    def has_orphans(self) -> bool:
        """True if an orphaned in-flight log lists changes.

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

    # -------------------------------------------------------------- reading
    def dirty_experiments(self) -> list[str | None]:
        """Experiments marked dirty (``None`` stands for "all")."""
        out: list[str | None] = []
        try:
            names = os.listdir(self._dirty)
        except FileNotFoundError:
            return out
        for name in sorted(names):
            if name.startswith(TMP_PREFIX) or not name.endswith(".json"):
                continue
            try:
                doc = _read(os.path.join(self._dirty, name))
            except (OSError, ValueError):
                continue
            out.append(doc.get("experiment_id") if isinstance(doc, dict) else None)
        return out

    def is_behind(self, experiment_id: str | None) -> bool:
        """True if the index may miss changes of ``experiment_id`` (``None``: of any).

        Counts changes still in flight in any process (live or dead, this one
        included), pending items and dirty marks.  The in-flight logs are
        read first: a change leaves its log only after it is in the index or
        pending, so no change slips between the two looks.
        """
        return self.in_flight(experiment_id) or self.has_backlog(experiment_id, orphans=False)

    def in_flight(self, experiment_id: str | None) -> bool:
        """True if a non-empty in-flight log (of any process) lists ``experiment_id``.

        ``None``: lists anything.  Logs are emptied by their owner once every
        change they list is in the index or pending, so this is False soon
        after the writers of the experiment went idle.
        """
        needle = None if experiment_id is None else b'"e":' + dumps(experiment_id) + b","
        try:
            with os.scandir(self._inflight) as it:
                paths = [e.path for e in it if e.name.endswith(".log")]
        except FileNotFoundError:
            return False
        for path in paths:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                continue
            if data and (needle is None or needle in data):
                return True
        return False

    def has_backlog(self, experiment_id: str | None, *, orphans: bool = True) -> bool:
        """True if pending items, dirty marks (or, with ``orphans``, orphaned
        in-flight logs) name ``experiment_id`` (``None``: any experiment)."""
        try:
            dirty = [n for n in os.listdir(self._dirty) if not n.startswith(TMP_PREFIX)]
        except FileNotFoundError:
            dirty = []
        if experiment_id is None:
            if dirty:
                return True
            return self.has_pending() or (orphans and self.has_orphans())
        if f"{ALL}.json" in dirty or f"{_exp_key(experiment_id)}.json" in dirty:
            return True
        return (
            _has_entries(os.path.join(self._pending, _exp_key(experiment_id)))
            or (orphans and self.has_orphans())
        )

    def needs_catch_up(self, experiment_id: str | None) -> bool:
        """True if a catch-up of a store scoped to ``experiment_id`` (``None``:
        unscoped) has work: pending items of any experiment, orphaned in-flight
        logs, or a dirty mark of an experiment of the scope."""
        if self.has_pending() or self.has_orphans():
            return True
        return any(e is not None and (experiment_id is None or e == experiment_id)
                   for e in self.dirty_experiments())

    def has_pending(self) -> bool:
        """True if some item is pending."""
        try:
            with os.scandir(self._pending) as it:
                return any(_has_entries(e.path) for e in it if e.is_dir())
        except FileNotFoundError:
            return False

    def claim(self, experiment_id: str | None = None, limit: int = 10_000) -> list[PendingItem]:
        """Claim up to ``limit`` items (of one experiment, or of all).

        A claimed item is renamed so no other process takes it; call
        :meth:`done` after syncing it, or :meth:`release` if syncing failed.
        """
        folders: list[str]
        if experiment_id is not None:
            folders = [os.path.join(self._pending, _exp_key(experiment_id))]
        else:
            try:
                folders = sorted(e.path for e in os.scandir(self._pending) if e.is_dir())
            except FileNotFoundError:
                return []
        out: list[PendingItem] = []
        token = secrets.token_hex(4)
        now = time.time()
        for folder in folders:
            for entry in _entries(folder):
                if len(out) >= limit:
                    return out
                name = entry.name
                if _CLAIM in name:
                    try:
                        if now - entry.stat().st_mtime < STALE_CLAIM_SECONDS:
                            continue
                    except FileNotFoundError:
                        continue
                    base = name.split(_CLAIM)[0]
                else:
                    base = name
                claimed = os.path.join(folder, f"{base}{_CLAIM}{token}")
                try:
                    os.rename(entry.path, claimed)
                    os.utime(claimed)
                except FileNotFoundError:
                    continue  # another process took it
                try:
                    doc = _read(claimed)
                except (OSError, ValueError):
                    with contextlib.suppress(OSError):
                        os.unlink(claimed)
                    continue
                if not isinstance(doc, dict) or not isinstance(doc.get("experiment_id"), str):
                    with contextlib.suppress(OSError):
                        os.unlink(claimed)
                    continue
                out.append(PendingItem(doc["experiment_id"], str(doc.get("kind")),
                                       doc.get("run_id"), claimed))
        return out

    @staticmethod
    def done(items: list[PendingItem]) -> None:
        for item in items:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.path)

    @staticmethod
    def release(items: list[PendingItem]) -> None:
        """Give claimed items back (syncing them failed)."""
        for item in items:
            original = item.path.split(_CLAIM)[0]
            if os.path.exists(original):
                # the item was marked again meanwhile: the new one covers it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.path)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.rename(item.path, original)


def _read(path: str) -> Any:
    with open(path, "rb") as fh:
        return loads(fh.read())


def _entries(folder: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(TMP_PREFIX)]
    except FileNotFoundError:
        return iter(())
    return iter(entries)


def _has_entries(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(TMP_PREFIX) for e in it)
    except FileNotFoundError:
        return False


class InflightLog:
    """An append-only list of changes being sent, locked by its owner process.

    Not thread-safe by itself (the flusher calls it under its lock).  After
    ``fork`` the child must call :meth:`forget` so the parent's lock is not
    kept alive by the child's copy of the descriptor.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.size = 0

    def append(self, experiment_id: str, kind: str, run_id: str | None) -> None:
        if self._fd is None:
            raise OSError(f"in-flight log {self.path} is closed")
        line = dumps({"e": experiment_id, "k": kind, "r": run_id}) + b"\n"
        os.write(self._fd, line)
        self.size += len(line)

    def truncate(self) -> None:
        """Forget every line (all of them are settled)."""
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
