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

In-flight items (``{item}.json.inflight-{token}``) are written by a process's
background flusher (``_flusher``) for changes it is about to send to the
index itself.  The flusher deletes them once the change is committed, or turns
them into ordinary items if sending failed.  While young they are neither
claimed by other processes nor counted by :meth:`Journal.is_behind`; an
in-flight item older than :data:`INFLIGHT_GRACE_SECONDS` was left by a process
that died before flushing, and is then treated like any pending item.

Thread/process safe.  Never holds secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from metalab._internal._atomic import TMP_PREFIX, atomic_write_bytes
from metalab._internal._json import dumps, dumps_pretty, loads
from metalab._internal._names import safe_experiment_id
from metalab._internal._time import to_iso, utcnow

__all__ = ["ALL", "INFLIGHT_GRACE_SECONDS", "Journal", "PendingItem"]

ALL = "_all"
_CLAIM = ".claimed-"
_INFLIGHT = ".inflight-"
#: an in-flight item older than this was left by a process that died before flushing
INFLIGHT_GRACE_SECONDS = 30.0
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

    def mark_inflight(
        self, experiment_id: str, kind: str, run_id: str | None, tag: str
    ) -> str:
        """Write an in-flight item (see the module docstring); returns its path.

        ``tag`` must be unique per call within the journal (process token +
        sequence number).  Not durable (no fsync): it only has to survive the
        process, not the machine.
        """
        self._write_target()
        name = hashlib.sha256(f"{kind}\x00{run_id}".encode()).hexdigest()[:24]
        doc = {"experiment_id": experiment_id, "kind": kind, "run_id": run_id,
               "at": to_iso(utcnow())}
        path = os.path.join(
            self._pending, _exp_key(experiment_id), f"{name}.json{_INFLIGHT}{tag}"
        )
        atomic_write_bytes(path, dumps(doc), durable=False)
        return path

    @staticmethod
    def drop_inflight(paths: list[str]) -> None:
        """Delete in-flight items whose change reached the index."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @staticmethod
    def release_inflight(paths: list[str]) -> None:
        """Turn in-flight items into ordinary pending items (sending them failed)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, path.split(_INFLIGHT)[0])

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
        """True if the index may miss changes of ``experiment_id`` (``None``: of any)."""
        try:
            dirty = [n for n in os.listdir(self._dirty) if not n.startswith(TMP_PREFIX)]
        except FileNotFoundError:
            dirty = []
        if experiment_id is None:
            if dirty:
                return True
            return self.has_pending()
        if f"{ALL}.json" in dirty or f"{_exp_key(experiment_id)}.json" in dirty:
            return True
        return _has_entries(os.path.join(self._pending, _exp_key(experiment_id)), time.time())

    def has_pending(self) -> bool:
        """True if some item is pending (young in-flight items do not count)."""
        now = time.time()
        try:
            with os.scandir(self._pending) as it:
                return any(_has_entries(e.path, now) for e in it if e.is_dir())
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
                if _INFLIGHT in name:
                    try:
                        if now - entry.stat().st_mtime < INFLIGHT_GRACE_SECONDS:
                            continue  # its process is sending it right now
                    except FileNotFoundError:
                        continue
                    base = name.split(_INFLIGHT)[0]
                elif _CLAIM in name:
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


def _has_entries(folder: str, now: float) -> bool:
    """True if ``folder`` holds an item (young in-flight items do not count)."""
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith(TMP_PREFIX):
                    continue
                if _INFLIGHT in e.name:
                    try:
                        if now - e.stat().st_mtime < INFLIGHT_GRACE_SECONDS:
                            continue
                    except FileNotFoundError:
                        continue
                return True
    except FileNotFoundError:
        return False
    return False
