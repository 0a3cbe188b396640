"""Catch-up, reconcile and rebuild of a PostgresStore: the index brought level with the files.

A mixin of :class:`~metalab.store._postgres._store.PostgresStore` (see that
module for the write and read paths).  The files are the truth; the index
learns what it missed from them:

* after successful index writes, the flusher thread looks at the catch-up
  journal (at most every :data:`CATCH_UP_INTERVAL` seconds) and moves the
  change-log offsets of the experiments this store wrote;
* :meth:`PostgresCatchUp.catch_up` adopts orphaned in-flight logs, re-syncs
  dirty experiments of the scope and replays each ``behind`` experiment's
  change logs past its stored offsets (or lists its folder when the logs
  cannot vouch for every change);
* :meth:`PostgresCatchUp.reconcile` and :meth:`PostgresCatchUp.rebuild_index`
  make the index equal to a listing of the files.

Thread/process safety: catch-ups of one experiment take turns (its journal
lock, across processes); within a process, catch-ups of one file root and
index run one after the other (:func:`_catch_up_lock`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalab._errors import ConfigError, CorruptRecordError, StoreError
from metalab.store._base import Progress, warn_corrupt
from metalab.store._changes import (
    Changes,
    folder_mtimes,
    log_ends,
    moved_states,
    read_changes,
    stat_logs,
)
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store._postgres._journal import LogOffsets

if TYPE_CHECKING:
    from metalab.store._index._interface import Index
    from metalab.store._index._postgres import PostgresIndex
    from metalab.store._postgres._config import PostgresStoreConfig
    from metalab.store._postgres._flusher import IndexFlusher
    from metalab.store._postgres._journal import Journal

__all__ = ["CATCH_UP_INTERVAL", "REPLAY_BATCH", "PostgresCatchUp"]

log = logging.getLogger("metalab.store.postgres")

#: seconds between two looks at the journal after successful index writes
CATCH_UP_INTERVAL = 2.0
#: runs read from the files and sent per transaction by a catch-up
REPLAY_BATCH = 2000

#: one catch-up at a time per journal folder in a process, so a catch-up that
#: returns (an explicit ``reconcile()``) never leaves one of a background
#: thread still working on marks it has claimed
_CATCH_UP_LOCKS: dict[str, threading.Lock] = {}
_CATCH_UP_LOCKS_LOCK = threading.Lock()


def _catch_up_lock(folder: str) -> threading.Lock:
    with _CATCH_UP_LOCKS_LOCK:
        found = _CATCH_UP_LOCKS.get(folder)
        if found is None:
            found = _CATCH_UP_LOCKS[folder] = threading.Lock()
        return found


# a forked child gets fresh locks (a parent's thread may have held one at the fork)
os.register_at_fork(after_in_child=_CATCH_UP_LOCKS.clear)


def _derived_lookup(files: FileStore) -> Callable[[str], dict[str, Any] | None]:
    """``files.get_derived`` that skips runs without a derived file (one listing, no open)."""
    if files.experiment_id is None:
        return files.get_derived
    try:
        names = set(os.listdir(os.path.join(files.get_working_directory(), "derived")))
    except FileNotFoundError:
        names = set()
    except OSError:
        return files.get_derived
    return lambda run_id: files.get_derived(run_id) if f"{run_id}.json" in names else None


class PostgresCatchUp:
    """Catch-up, reconcile and rebuild of a PostgresStore (see the module docstring)."""

    if TYPE_CHECKING:  # provided by PostgresStore
        _config: PostgresStoreConfig
        _files: FileStore
        _journal: Journal
        _index: PostgresIndex
        _query_index: Index
        _lock: threading.Lock
        _touched: set[str]
        _next_catch_up: float
        _next_catch_up_request: float

        @property
        def experiment_id(self) -> str | None: ...
        @property
        def is_scoped(self) -> bool: ...
        def flush(self, timeout: float | None = None) -> bool: ...
        def _files_of(self, experiment_id: str) -> FileStore: ...
        def _replay_files(self, experiment_id: str) -> FileStore: ...
        def _get_flusher(self) -> IndexFlusher: ...

    def _after_flush(self) -> None:
        """Runs in the flusher thread after each successful batch.

        Catches up at most every :data:`CATCH_UP_INTERVAL` seconds.  Raises
        what :meth:`catch_up` raises (the flusher then retries later).
        """
        self._note_created_schema()
        if time.monotonic() >= self._next_catch_up:
            self._next_catch_up = time.monotonic() + CATCH_UP_INTERVAL
            if self._journal.needs_catch_up(self.experiment_id):
                self.catch_up()
            self._advance_touched()

    def _advance_touched(self) -> None:
        """Move the offsets of the experiments this store wrote (see :meth:`_advance`).

        Never raises: offsets left behind only make a later catch-up read more.
        """
        with self._lock:
            todo, self._touched = sorted(self._touched), set()
        for eid in todo:
            try:
                moved = self._advance(eid)
            except (OSError, StoreError, ConfigError) as exc:
                log.debug("change log offsets of %s not moved: %s", eid, exc)
                moved = False
            if not moved:
                with self._lock:
                    self._touched.add(eid)

    def _advance(self, experiment_id: str) -> bool:
        """Move the offsets of ``experiment_id`` towards the ends of its change
        logs without reading them: up to the ends, taken first, or to the
        position of the first unsent change an in-flight log lists, if no
        mark names the experiment (see ``_journal``).

        Returns True if the offsets now reach the ends.
        """
        folder = self._replay_files(experiment_id).get_working_directory()
        with self._journal.lock(experiment_id, wait=False) as held:
            if not held:
                return False
            dirs = folder_mtimes(folder)
            logs = stat_logs(folder)
            if logs is None:
                return True  # nothing logged: nothing to move
            ends = log_ends(folder, logs)
            # the in-flight logs first: a writer marks before it empties its log
            unsent = self._journal.inflight_positions(experiment_id)
            if (unsent is None or not unsent.keys() <= ends.keys()
                    or self._journal.has_backlog(experiment_id, orphans=False)):
                return False
            known = self._journal.read_offsets(experiment_id) or LogOffsets({}, {})
            moved = moved_states(folder, ends, unsent, known.logs)
            if moved != known.logs:
                self._journal.write_offsets(experiment_id, LogOffsets(moved, dirs))
            return not unsent

    def _background_catch_up(self) -> None:
        """The flusher's retry, or a catch-up a read asked for (flusher thread)."""
        self._note_created_schema()
        self._next_catch_up = time.monotonic() + CATCH_UP_INTERVAL
        if self._journal.needs_catch_up(self.experiment_id):
            self.catch_up()

    def _note_created_schema(self) -> None:
        if self._index.created_schema:
            # a fresh index beside existing files: every experiment must be synced
            self._index.created_schema = False
            root = FileStore(FileStoreConfig(root=self._files.config.root))
            for eid in root.list_experiments():
                self._journal.mark_dirty(eid)
            self._next_catch_up = 0.0

    def _request_catch_up(self) -> None:
        if self._config.index_mode != "sync" or self._config.read_only:
            return  # deferred or read-only: this process never writes to the index by itself
        now = time.monotonic()
        if now < self._next_catch_up_request:
            return
        self._next_catch_up_request = now + CATCH_UP_INTERVAL
        self._get_flusher().request_catch_up()

    # ------------------------------------------------------------ catch-up
    def index_is_behind(self) -> bool:
        """True if the index may miss changes of this store's scope.

        Waits for this process's queued changes first; changes other live
        processes have not sent yet count as missing.
        """
        self.flush()
        return self._journal.is_behind(self.experiment_id)

    def catch_up(self) -> int:
        """Bring the changes the index missed over from the files.

        Orphaned in-flight logs (writers that died before sending) mark their
        experiments ``behind``.  Every experiment marked ``behind`` is caught
        up, also on a store scoped to one experiment (the index is shared):
        its change logs are read past the stored offsets and the files they
        name are sent, or, when the logs cannot vouch for every change, its
        folder is listed and re-synced.  Experiments marked dirty are re-synced
        only within this store's scope.

        Returns the changes replayed (each run named in the logs, plus the
        experiment's manifests when it has any) plus the dirty experiments
        re-synced.  Safe to run in several processes at once (catch-ups of one
        experiment take turns); within a process, catch-ups of one file root
        and index run one after the other.

        Raises:
            IndexUnavailableError: the index cannot be reached (the marks stay
                in the journal).
            StoreError: the index was made by a newer metalab (its schema version is
                checked first; nothing is written, the marks stay).
        """
        with _catch_up_lock(self._journal.folder):
            return self._catch_up()

    def _catch_up(self) -> int:
        self._index.check_schema()  # (a newer metalab may have migrated it meanwhile)
        total = 0
        self._journal.adopt_orphans()  # changes of processes that died before sending
        dirty = [
            e for e in self._journal.dirty_experiments()
            if e is not None and (self.experiment_id is None or e == self.experiment_id)
        ]
        if dirty:
            self._sync(dirty, None, drop_others=False)
            total += len(dirty)
        for eid in self._journal.behind_experiments():
            total += self._replay(eid)
        return total

    def _replay(self, experiment_id: str) -> int:
        """Catch ``experiment_id`` up from its change logs; returns the changes replayed.

        Under the experiment's journal lock, the mark claimed before the logs
        are read.  A corrupt run file keeps the experiment marked (reads use
        the files, which report it) until it is rewritten or deleted."""
        files = self._replay_files(experiment_id)
        folder = files.get_working_directory()
        with self._journal.lock(experiment_id):
            claim = self._journal.claim_behind(experiment_id)
            if claim is None:
                return 0  # another catch-up did it meanwhile
            try:
                known = self._journal.read_offsets(experiment_id) or LogOffsets({}, {})
                feed = read_changes(folder, known.logs, known.seen)
                if feed.reason is not None:  # (stores the offsets itself)
                    log.debug("index catch-up of %s: full listing (%s)", experiment_id,
                              feed.reason)
                    count = self._sync_files(experiment_id, None, feed)
                else:
                    wanted = feed.changed["runs"] | feed.changed["derived"] | claim.runs
                    count, corrupt = self._send_runs(experiment_id, files, sorted(wanted))
                    self._journal.write_offsets(experiment_id,
                                                LogOffsets(feed.states, feed.dirs))
                    if corrupt:
                        self._journal.mark_behind(experiment_id, corrupt)
            except BaseException:
                self._journal.release(claim)
                raise
            self._journal.done(claim)
            return count

    def _send_runs(self, experiment_id: str, files: FileStore,
                   run_ids: list[str]) -> tuple[int, list[str]]:
        """Send the files of ``run_ids`` and the experiment's manifests; returns
        (changes sent, run ids whose record file is corrupt)."""
        corrupt: list[str] = []
        manifests = files.list_experiment_manifests(experiment_id)
        for start in range(0, max(len(run_ids), 1), REPLAY_BATCH):
            runs: list[tuple[str, dict[str, Any]]] = []
            gone: list[tuple[str, str]] = []
            derived: list[tuple[str, str, dict[str, Any]]] = []
            no_derived: list[tuple[str, str]] = []
            for rid in run_ids[start:start + REPLAY_BATCH]:
                try:
                    rec = files.get_run_record(rid)
                except CorruptRecordError as exc:
                    warn_corrupt(exc)
                    corrupt.append(rid)
                    continue
                if rec is None:
                    gone.append((experiment_id, rid))
                    continue
                runs.append((experiment_id, rec.to_dict()))
                values = files.get_derived(rid)
                if values is None:
                    no_derived.append((experiment_id, rid))
                else:
                    derived.append((experiment_id, rid, values))
            self._index.apply(
                runs=runs, delete_runs=gone, derived=derived, delete_derived=no_derived,
                manifests={experiment_id: manifests} if start == 0 else None,
            )
        return len(run_ids) - len(corrupt) + (1 if manifests else 0), corrupt

    def reconcile(self, *, full: bool = False, progress: Progress | None = None) -> dict[str, Any]:
        """Bring the index to equality with the files.

        Replays the journal and fully re-syncs experiments marked dirty (for
        example by an interrupted rebuild).  ``full=True`` re-syncs every
        experiment of the scope (a differential upsert: unchanged rows are not
        rewritten).

        Returns:
            ``{"replayed": changes (see :meth:`catch_up`), "resynced": [experiment
            ids], "runs": n}``.

        Raises:
            IndexUnavailableError: the index cannot be reached.
            StoreError: the index was made by a newer metalab (its schema version is
                checked first; nothing is written, the marks stay).
        """
        self.flush()
        self._index.breaker.reset()  # an explicit request: try now
        self._index.check_schema()
        if self._index.created_schema:
            self._index.created_schema = False
            full = True
        if full:
            runs = self.rebuild_index(progress=progress)
            return {"replayed": 0, "resynced": self._scope_experiments(), "runs": runs}
        dirty = self._journal.dirty_experiments()
        resync: list[str] = []
        if None in dirty:
            resync = self._scope_experiments()
        else:
            resync = [e for e in dirty if e is not None and
                      (self.experiment_id is None or e == self.experiment_id)]
        runs = 0
        if resync:
            runs = self._sync(resync, progress, drop_others=None in dirty and not self.is_scoped)
        replayed = self.catch_up()
        return {"replayed": replayed, "resynced": resync, "runs": runs}

    # ------------------------------------------------------------ rebuild
    def _scope_experiments(self) -> list[str]:
        if self.experiment_id is not None:
            return [self.experiment_id]
        return self._files.list_experiments()

    def rebuild_index(self, progress: Progress | None = None) -> int:
        """Rebuild the index of this store's scope from the files alone.

        Runs, derived metrics and experiment manifests are restored with
        binary COPY, one transaction per experiment; rows of experiments
        outside the scope are not touched (an unscoped store also removes
        experiments that no longer have files).  An interrupted rebuild
        leaves the experiment marked dirty, so reads use the files until a
        rebuild or :meth:`reconcile` finishes.

        Args:
            progress: called as ``progress(runs_done, runs_total_or_None)``.

        Returns:
            the number of runs indexed.

        Raises:
            IndexUnavailableError: the index cannot be reached.
            StoreError: the index was made by a newer metalab (its schema version is
                checked first; nothing is written, the marks stay).
            ReadOnlyStoreError: the store is read-only (the guard of every
                write method, see :class:`~metalab.store.Store`).
        """
        return self._query_index.rebuild(progress)

    def _sync(self, experiments: list[str], progress: Progress | None, drop_others: bool) -> int:
        self._index.check_schema()  # (a newer metalab may have migrated it meanwhile)
        total = self._estimate_runs(experiments)
        done = 0
        if drop_others:
            self._journal.mark_dirty(None)
        for eid in experiments:
            self._journal.mark_dirty(eid)
        self._journal.adopt_orphans()
        for eid in experiments:

            def tick(n: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + n, total)

            with self._journal.lock(eid):
                claim = self._journal.claim_behind(eid)  # the listing below covers it
                try:
                    n = self._sync_files(eid, tick)
                except BaseException:
                    self._journal.release(claim)
                    raise
                self._journal.done(claim)
            self._journal.clear_dirty(eid)
            done += n
        if drop_others:
            self._index.drop_experiments_except(experiments)
            self._journal.clear_dirty(None)
        return done

    def _sync_files(self, experiment_id: str, tick: Callable[[int], None] | None,
                    feed: Changes | None = None) -> int:
        """Make the index of ``experiment_id`` equal to a listing of its files.

        Hold the experiment's journal lock.  The offsets stored are the log
        ends taken before the listing (``feed``: a :func:`read_changes` that
        asked for this listing, taken just before; else taken here).  A corrupt record file marks the
        experiment ``behind`` with its run (reads use the files, which report
        it).  Returns the runs indexed.
        """
        files = self._replay_files(experiment_id)
        folder = files.get_working_directory()
        if feed is None:
            feed = read_changes(folder, {}, {}, list_anyway="a full re-sync")
        broken: list[str] = []

        def on_error(exc: CorruptRecordError) -> None:
            warn_corrupt(exc)
            name = os.path.basename(exc.path or "")
            if name.endswith(".json"):
                broken.append(name[: -len(".json")])

        n = self._index.sync_experiment(
            experiment_id,
            files.iter_run_documents(experiment_id, on_error=on_error),
            _derived_lookup(files),
            files.list_experiment_manifests(experiment_id),
            tick,
        )
        self._journal.write_offsets(experiment_id, LogOffsets(feed.states, feed.dirs))
        if broken:
            self._journal.mark_behind(experiment_id, broken)
        return n

    def _estimate_runs(self, experiments: list[str]) -> int | None:
        total = 0
        for eid in experiments:
            try:
                names = os.listdir(os.path.join(self._files_of(eid).get_working_directory(), "runs"))
            except OSError:
                continue
            total += sum(1 for n in names if n.endswith(".json") and not n.startswith("."))
        return total
