"""Background flusher: index writes batched off the caller's path.

A :class:`PostgresStore` in ``"sync"`` index mode writes the files, then hands
the change to its process's :class:`IndexFlusher` and returns.  The caller pays
the file write, one line appended to the in-flight log and a queue append; a
daemon thread sends the queued changes to PostgreSQL up to 0.1 s later,
many at a time, in one transaction (``PostgresIndex.apply``).

Nothing is lost on the way:

* the change itself is logged by the FileStore (its ``.changes/`` log line,
  see ``_changes``); before the file write, :meth:`IndexFlusher.begin` lists
  the experiment in the process's in-flight log (see ``_journal``), once
  until everything is settled again.  If the process dies before the flush,
  its lock on the log goes away and any process's catch-up marks the
  experiment ``behind`` and reads its change logs;
* if a flush fails (server down, circuit breaker open, any database error) the
  experiments of the batch are marked ``behind`` (by the flusher thread), and
  the next catch-up reads their change logs; the caller never waits for the
  server;
* if the queue is full (the server is slower than the writers), or the store
  is in ``deferred`` index mode, a change marks its experiment ``behind``
  instead of being queued.

After a failed batch (or a failed catch-up) the thread stays up and calls the
store's catch-up again once the circuit breaker lets it try (doubling waits,
at most the breaker's cap), until one succeeds or the flusher is closed: the
changes journaled while the server was away reach the index without another
write of this process.  :meth:`IndexFlusher.request_catch_up` asks for such a
catch-up at once (reads do, when they find the journal not empty).

:meth:`IndexFlusher.flush` waits until every change queued so far is in the
index (or journaled); the store calls it before bulk reads, so a process
always reads its own writes, and on ``close()``.  Every live flusher is also
flushed at interpreter exit (``atexit``) and at the end of a
``multiprocessing`` child (which skips ``atexit``).

Thread safety: :meth:`submit` and :meth:`flush` may be called from any thread.
A flusher belongs to the process that created it; after ``fork`` the store
makes a new one (the parent's queue stays with the parent).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import IndexUnavailableError, StoreError
from metalab._internal._throttle import Throttle

if TYPE_CHECKING:
    from metalab.store._index._postgres import PostgresIndex
    from metalab.store._postgres._journal import InflightLog, Journal

__all__ = ["FLUSH_BATCH", "FLUSH_DELAY", "MAX_QUEUE", "IndexFlusher", "Op", "flush_target"]

log = logging.getLogger("metalab.store.postgres")

#: seconds the flusher waits for more changes before sending a batch (a batch
#: costs the writing process ~0.6 ms of CPU whatever its size, and the server
#: a commit: fewer, larger batches take less from the writer; reads of the
#: same process send the queue first, other processes see a change later)
FLUSH_DELAY = 0.1
#: a batch is sent at once when this many changes are queued
FLUSH_BATCH = 500
#: beyond this many queued changes, new ones are journaled instead of queued
MAX_QUEUE = 50_000
#: an idle flusher thread ends after this many seconds (restarted on demand)
IDLE_EXIT = 10.0
#: seconds between two warnings about deferred index updates
WARN_INTERVAL = 30.0
#: the in-flight log is replaced by a fresh one beyond this size (bytes)
LOG_ROTATE_BYTES = 1 << 16

Key = tuple[str, str, str | None]  # (experiment_id, kind: "run" or "manifests", run_id)
#: (change-log name, header id, byte position), see ``_changes.log_position``
Position = tuple[str, str, int]


@dataclass(frozen=True)
class Op:
    """One change to send: ``action`` is ``put_run``, ``delete_run``,
    ``derived`` or ``manifests``; ``payload`` the record document or derived
    values (``None`` for the others); ``text``: for ``put_run``, the record
    as the JSON bytes written to its file (sent as is, instead of ``payload``)."""

    experiment_id: str
    action: str
    run_id: str | None = None
    payload: dict[str, Any] | None = None
    text: bytes | None = None

    @property
    def key(self) -> Key:
        kind = "manifests" if self.action == "manifests" else "run"
        return (self.experiment_id, kind, self.run_id)


_LIVE: weakref.WeakSet[IndexFlusher] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _flush_all_at_exit() -> None:
    with _LIVE_LOCK:
        live = [f for f in _LIVE if f.pid == os.getpid()]
    for flusher in live:
        with contextlib.suppress(Exception):
            flusher.close(timeout=flusher.exit_timeout)


def flush_target(target: str, timeout: float) -> bool:
    """Flush every flusher of this process whose journal folder is ``target``.

    So any store of the process reads the writes of every other store of the
    same process and index.  Returns False if ``timeout`` passed first.
    """
    with _LIVE_LOCK:
        live = [f for f in _LIVE if f.pid == os.getpid() and f.target == target]
    deadline = time.monotonic() + timeout
    ok = True
    for flusher in live:
        ok = flusher.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok


def _forget_parents_logs() -> None:
    """In a forked child: drop the descriptors of the parent's logs (and locks)."""
    with contextlib.suppress(Exception):
        for flusher in list(_LIVE):
            if flusher.pid != os.getpid():
                flusher._forget_logs()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_forget_parents_logs)
with contextlib.suppress(Exception):  # multiprocessing children skip atexit
    from multiprocessing import util as _mp_util

    _mp_util.Finalize(None, _flush_all_at_exit, exitpriority=10)


class IndexFlusher:
    """Per-process queue + daemon thread sending index changes in batches.

    Args:
        index: where changes go.
        journal: where the in-flight log and ``behind`` marks are written.
        manifests_of: reads the manifest list of an experiment from the files
            (called at flush time, so the latest list is sent).
        after_flush: called in the flusher thread after each successful batch
            (the store uses it for catch-up); if it raises, ``catch_up`` is
            retried later.
        catch_up: replays the journal (``PostgresStore.catch_up``); called in
            the flusher thread when a retry is due or was requested.
        exit_timeout: seconds to wait at interpreter exit.
        deferred: never send; every change marks its experiment ``behind``
            (``index_mode="deferred"``).
        on_close: called by :meth:`close` once everything is flushed (also at
            interpreter exit); must not raise.
        position_of: where the next change-log line of an experiment will be
            at the earliest (``_changes.log_position`` of its folder); listed
            with the experiment, so a catch-up may move its offsets up to there
            while this process still has changes in flight.  Never raises.
    """

    def __init__(
        self,
        index: PostgresIndex,
        journal: Journal,
        manifests_of: Callable[[str], list[tuple[datetime, dict[str, Any]]]],
        after_flush: Callable[[], None] | None = None,
        *,
        catch_up: Callable[[], object] | None = None,
        exit_timeout: float = 10.0,
        deferred: bool = False,
        on_close: Callable[[], None] | None = None,
        position_of: Callable[[str], Position] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.exit_timeout = exit_timeout
        self._index = index
        self._journal = journal
        #: the journal folder (one per file root and index target)
        self.target = journal.folder
        self._manifests_of = manifests_of
        self._after_flush = after_flush
        self._catch_up = catch_up
        self._cond = threading.Condition()
        self._queue: list[tuple[int, Op]] = []
        self._log: InflightLog | None = None
        self._deferred = deferred
        self._on_close = on_close
        self._position_of = position_of
        #: changes begun and not settled: experiment -> generation (batches
        #: cut so far) -> [its change-log position at its first change, count]
        self._open: dict[str, dict[int, list[Any]]] = {}
        self._gen = 0
        self._gen_of: dict[int, int] = {}  # seq of a queued change -> its generation
        self._seq = itertools.count(1)
        self._submitted = 0  # seq of the last change queued
        self._finished = 0  # every change with seq <= this is applied or journaled
        self._urgent = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._warning = Throttle(WARN_INTERVAL)
        self._catch_up_due = False  # run ``catch_up`` at ``_catch_up_at`` (monotonic)
        self._catch_up_at = 0.0
        self._backoff = 0.0  # seconds between failed catch-ups (doubling)
        with _LIVE_LOCK:
            _LIVE.add(self)

    # ------------------------------------------------------------ callers
    def begin(self, experiment_id: str) -> int:
        """Announce a change of ``experiment_id``: call it *before* the file write.

        Lists the experiment in the in-flight log, with the position of its
        next change-log line (see ``_journal``), unless changes of it are
        unsettled already: a catch-up never takes the change's log line as
        sent.  Follow it with :meth:`submit` once the file is written, or
        :meth:`abort` if the write failed, passing the returned generation.

        Raises:
            OSError: the in-flight log cannot be written (the file root is
                not writable).
        """
        with self._cond:
            gens = self._open.get(experiment_id)
            entry = gens.get(self._gen) if gens else None
            if entry is not None:
                entry[1] += 1
                return self._gen
            pos = self._position_of(experiment_id) if self._position_of is not None else None
            if not gens:  # the first unsettled change of the experiment
                self._note(experiment_id, pos)
                gens = self._open[experiment_id] = {}
            gens[self._gen] = [pos, 1]
            return self._gen

    def abort(self, experiment_id: str, generation: int) -> None:
        """The file write announced by :meth:`begin` failed: nothing to send."""
        with self._cond:
            self._release(experiment_id, generation)
            self._empty_log_if_settled()

    def submit(self, op: Op, generation: int) -> None:
        """Queue ``op`` (its file write, announced by :meth:`begin`, must be complete).

        Never blocks on the server.

        Raises:
            OSError: a ``behind`` mark cannot be written (the file root is
                not writable).
        """
        with self._cond:
            if self._deferred or self._closed or len(self._queue) >= MAX_QUEUE:
                try:
                    self._journal.mark_behind(op.experiment_id)
                finally:
                    self._release(op.experiment_id, generation)
                    self._empty_log_if_settled()
                return
            seq = next(self._seq)
            self._gen_of[seq] = generation
            self._queue.append((seq, op))
            self._submitted = seq
            if self._thread is None:
                self._start_thread()
            elif len(self._queue) == 1 or len(self._queue) >= FLUSH_BATCH:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every change queued so far is in the index or journaled.

        Returns False if ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._urgent = True
            self._cond.notify_all()
            while self._finished < target:
                if self._thread is None and self._queue:  # thread ended: start another
                    self._start_thread()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def request_catch_up(self) -> None:
        """Run ``catch_up`` in the flusher thread soon (returns at once).

        A retry already scheduled after a failure keeps its time.
        """
        if self._catch_up is None:
            return
        with self._cond:
            if self._closed:
                return
            if not self._catch_up_due:
                self._catch_up_due = True
                self._catch_up_at = time.monotonic()
            self._start_thread()
            self._cond.notify_all()

    def _start_thread(self) -> None:
        """Start the sending thread if none runs (caller holds ``_cond``)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="metalab-index-flusher", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; later changes are journaled directly.

        The in-flight log is deleted if everything was settled, else kept
        (a catch-up adopts it once this process ends).
        """
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            settled = not self._open
            if self._log is not None:
                self._log.close(remove=settled)
                self._log = None
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close()
        return done

    def _forget_logs(self) -> None:
        if self._log is not None:
            self._log.forget()

    @property
    def pending(self) -> int:
        """Changes queued and not yet sent."""
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------ thread
    def _run(self) -> None:
        while True:
            with self._cond:
                idle_since = time.monotonic()
                while not self._queue:
                    if self._closed:
                        self._thread = None
                        return
                    if self._catch_up_due:  # the thread stays up for it
                        left = self._catch_up_at - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                        continue
                    if time.monotonic() - idle_since > IDLE_EXIT:
                        self._thread = None
                        return
                    self._cond.wait(IDLE_EXIT)
                if not self._queue:  # a catch-up is due
                    self._catch_up_due = False
                    catch_up_now = True
                else:
                    catch_up_now = False
            if catch_up_now:
                self._run_catch_up(self._catch_up)
                continue
            with self._cond:
                if not self._urgent and len(self._queue) < FLUSH_BATCH:
                    self._cond.wait(FLUSH_DELAY)  # let a batch gather
                batch, self._queue = self._queue, []
                self._gen += 1  # changes begun from now on are of the next batch
                self._urgent = False
            try:
                self._send(batch)
            except BaseException as exc:  # the thread must survive anything
                log.error("index flusher: unexpected error, changes journaled: %r", exc)
                try:
                    self._settle(batch, ok=False)
                except BaseException as journal_exc:
                    # the journal cannot be written either: the batch stays listed in
                    # the in-flight log, so readers keep using the files, and a
                    # catch-up adopts the log once this process is gone
                    log.error("index flusher: the changes could not be journaled either "
                              "(%r); they stay listed as in flight", journal_exc)
            with self._cond:
                self._finished = max(self._finished, batch[-1][0])
                self._cond.notify_all()

    def _run_catch_up(self, hook: Callable[[], object] | None) -> None:
        """Call ``hook`` (a catch-up); on failure schedule a retry of ``catch_up``."""
        if hook is None:
            return
        try:
            hook()
        except BaseException as exc:  # the thread must survive anything
            self._schedule_catch_up(exc)
            return
        with self._cond:
            self._backoff = 0.0

    def _schedule_catch_up(self, exc: BaseException | None) -> None:
        """Run ``catch_up`` once the circuit breaker allows a try.

        ``exc``: a catch-up attempt failed with it; the waits between failed
        attempts double (from the breaker's base to its cap) also for errors
        that do not open the breaker.  ``None``: changes were journaled (a
        failed batch, or the breaker was open); the wait does not grow.
        """
        breaker = self._index.breaker
        with self._cond:
            if self._catch_up is None or self._closed:
                return
            if exc is not None:
                self._backoff = min(max(2 * self._backoff, breaker.base), breaker.cap)
            at = time.monotonic() + max(breaker.retry_in(), self._backoff)
            if not self._catch_up_due or exc is not None or at < self._catch_up_at:
                self._catch_up_at = at
            self._catch_up_due = True
            self._cond.notify_all()
        if exc is not None and self._warning.ready():
            log.warning("index catch-up failed, retried later: %s", exc)

    def _send(self, batch: list[tuple[int, Op]]) -> None:
        if not self._index.breaker.allow():
            self._settle(batch, ok=False)
            self._schedule_catch_up(None)
            return
        runs: dict[tuple[str, str], dict[str, Any] | bytes] = {}
        derived: dict[tuple[str, str], dict[str, Any]] = {}
        deletes: set[tuple[str, str]] = set()
        manifests: set[str] = set()
        for _seq, op in batch:  # in order: the last change of a run wins
            if op.action == "manifests":
                manifests.add(op.experiment_id)
                continue
            k = (op.experiment_id, op.run_id or "")
            doc = op.text if op.text is not None else op.payload
            if op.action == "put_run" and doc is not None:
                runs[k] = doc
                deletes.discard(k)
            elif op.action == "derived" and op.payload is not None:
                derived[k] = op.payload
                deletes.discard(k)
            elif op.action == "delete_run":
                runs.pop(k, None)
                derived.pop(k, None)
                deletes.add(k)
        try:
            self._index.apply(
                runs=[(e, d) for (e, _r), d in runs.items()],
                delete_runs=sorted(deletes),
                derived=[(e, r, v) for (e, r), v in derived.items()],
                manifests={e: self._manifests_of(e) for e in sorted(manifests)},
            )
        except (IndexUnavailableError, StoreError, ImportError) as exc:
            self._settle(batch, ok=False)
            self._schedule_catch_up(None)
            if self._warning.ready():  # not one line per batch
                log.warning("index update deferred to the catch-up journal: %s", exc)
            return
        self._settle(batch, ok=True)
        with self._cond:  # the server answers: a scheduled catch-up need not wait
            self._backoff = 0.0
            if self._catch_up_due:
                self._catch_up_at = time.monotonic()
        self._run_catch_up(self._after_flush)

    def _settle(self, batch: list[tuple[int, Op]], *, ok: bool) -> None:
        """Mark the changes of ``batch`` settled; if not ``ok``, mark their
        experiments ``behind`` first.

        Empties the in-flight log once nothing listed in it is unsettled.
        """
        if not ok:
            for experiment_id in sorted({op.experiment_id for _seq, op in batch}):
                self._journal.mark_behind(experiment_id)
        with self._cond:
            for seq, op in batch:
                self._release(op.experiment_id, self._gen_of.pop(seq, -1))
            self._empty_log_if_settled()

    def _note(self, experiment_id: str, pos: Position | None) -> None:
        """List ``experiment_id`` at ``pos`` in the in-flight log, replacing the log
        by a fresh one beyond :data:`LOG_ROTATE_BYTES` (caller holds ``_cond``)."""
        if self._log is not None and self._log.size > LOG_ROTATE_BYTES:
            fresh = self._journal.open_inflight_log()
            for eid, gens in self._open.items():  # (the old log stays until this is written)
                fresh.note(eid, gens[min(gens)][0])
            self._log.close(remove=True)
            self._log = fresh
        if self._log is None:
            self._log = self._journal.open_inflight_log()
        self._log.note(experiment_id, pos)

    def _release(self, experiment_id: str, generation: int) -> None:
        """One change of ``experiment_id`` begun in ``generation`` is settled
        (caller holds ``_cond``).  When the oldest generation of the experiment
        is all settled, its listed position moves on to the next one's."""
        gens = self._open.get(experiment_id)
        entry = gens.get(generation) if gens else None
        if gens is None or entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        oldest = min(gens)
        del gens[generation]
        if not gens:
            del self._open[experiment_id]
        elif generation == oldest:
            try:
                self._note(experiment_id, gens[min(gens)][0])
            except OSError as exc:  # the older (smaller) position listed stays: safe
                log.debug("in-flight log not updated: %s", exc)

    def _empty_log_if_settled(self) -> None:
        """Empty the in-flight log if no change is unsettled (caller holds ``_cond``)."""
        if not self._open and self._log is not None:
            self._log.truncate()
