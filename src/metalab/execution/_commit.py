"""Group commit of the final records of runs executed in the caller's thread.

With an executor whose runs execute one after another in the calling thread
(``SerialExecutor``), each run would otherwise end with its own durable
write (one ``fsync``, that is one journal commit and disk flush, per run).
A :class:`GroupCommitter` instead lets :func:`~metalab.execution._worker.run_job`
*stage* the final record (a temp file, no ``fsync``; see
:mod:`metalab.store._group_commit`) and keeps the run's claim; its own thread
then commits every run staged meanwhile at once (one ``syncfs``, the
renames, the change-log lines), releases their claims and only then hands
each run's future to the handle.  So a run is never reported done (events,
handle status, ``result()``) before its record is durable, and the number of
disk flushes adapts to the runs and the disk: a group is what ended within
:data:`GROUP_WAIT_S` of its first run (or :data:`GROUP_TARGET` runs), plus
what ended while the previous group was being flushed, and the next runs
execute meanwhile.

A crash (``kill -9``) before a run's rename leaves its temp file (skipped by
readers) and its claim, whose owner is dead: the next launch takes the
claim over at once and executes the run again.  Runs staged but never handed
over (an interrupt between the two) are discarded at :meth:`GroupCommitter.close`:
temp file removed, claim released, so they too are executed again.

Thread safety: the committer is made by the submitting thread, which calls
:meth:`~GroupCommitter.submitted` and :meth:`~GroupCommitter.close`; only
runs executing in that thread are staged (:meth:`~GroupCommitter.stage` from
any other thread writes the record at once).  The committing thread calls
the ``track`` callback (the handle's, which is thread-safe; it runs the
``on_event`` callbacks of the runs).  What reporting a run raises beyond
``Exception`` (a callback's ``SystemExit``) does not stop the group: its
records are put in place and its claims released, and the first such
exception is raised in the submitting thread by the next
:meth:`~GroupCommitter.submitted` or by :meth:`~GroupCommitter.close`.
Should the committing thread end early, the submitting thread commits what
it hands over itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metalab.execution._worker import final_not_saved, release_quietly
from metalab.model import RunRecord

__all__ = ["GroupCommitter"]

log = logging.getLogger("metalab.execution")

#: runs handed over and not yet committed beyond which the submitting thread waits
#: (bounds the work a crash makes to redo)
MAX_QUEUED = 256

#: seconds the committer waits for more runs after the first one of a group (what the
#: report of a run's end may wait beyond its commit)
GROUP_WAIT_S = 0.01
#: runs that make a group worth committing without waiting further
GROUP_TARGET = 128

Track = Callable[[str, "cf.Future[Any]", Any], None]


@dataclass
class _Entry:
    staged: Any
    final: RunRecord
    owner: str | None
    running_shown: bool
    fut: cf.Future[Any] | None = None  # set when handed over
    job: Any = None
    run_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.run_id = self.final.run_id


class GroupCommitter:
    """Commits staged final records in groups, then reports the runs to ``track``.

    ``store`` must have ``stage_run_record``, ``commit_staged`` and
    ``discard_staged`` (:class:`~metalab.store.FileStore`) and
    ``release_claim``; ``track(run_id, future, job)`` is called once per
    run, after its record is durable (or with a failed future holding a
    :class:`~metalab.execution._worker.FinalRecordNotSavedError`).
    """

    def __init__(self, store: Any, track: Track) -> None:
        self._store = store
        self._track = track
        self._cond = threading.Condition()
        self._staged: dict[str, _Entry] = {}
        self._queue: list[_Entry] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dead = False  # the committer thread ended
        self._error: BaseException | None = None  # to raise in the submitting thread
        self._error_raised = False
        self._submitter = threading.get_ident()

    def stage(self, final: RunRecord, owner: str | None, running_shown: bool) -> None:
        """Write ``final`` to a temp file; the run's claim (``owner``, if claimed) is kept.

        From another thread than the submitting one, or after :meth:`close`
        (a run the handle executes again later), the record is written
        durably at once instead (nothing is staged: :meth:`holds` is False).
        Raises what ``stage_run_record`` / ``put_run_record`` raise (nothing
        is then staged).
        """
        if self._closed or threading.get_ident() != self._submitter:
            self._store.put_run_record(final)
            return
        staged = self._store.stage_run_record(final)
        with self._cond:
            self._staged[final.run_id] = _Entry(staged, final, owner, running_shown)

    def holds(self, run_id: str) -> bool:
        """True if ``run_id`` is staged and not yet handed over."""
        with self._cond:
            return run_id in self._staged

    def submitted(self, run_id: str, fut: cf.Future[Any], job: Any) -> bool:
        """Hand over the future of a finished run; False if the run was not staged
        (the caller then tracks it itself).  Waits while :data:`MAX_QUEUED` runs
        are waiting for their commit.

        Raises the first exception reporting a run raised (an ``on_event``
        callback's ``SystemExit``, say), once; the run handed over is committed
        and reported all the same (an interrupt while waiting for room too).
        """
        with self._cond:
            entry = self._staged.get(run_id)
            if entry is None:
                return False
            entry.fut, entry.job = fut, job
            try:
                while len(self._queue) >= MAX_QUEUED and not self._dead:
                    self._cond.wait()
            finally:  # (an interrupt while waiting: the run is queued all the same)
                del self._staged[run_id]
                direct = self._dead
                if not direct:
                    self._enqueue(entry)
        if direct:  # the committer thread is gone: commit here
            self._commit([entry])
        self._raise_error()
        return True

    def _enqueue(self, entry: _Entry) -> None:
        """Queue ``entry`` for the committer thread (started at the first run); holds the lock."""
        self._queue.append(entry)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="metalab-group-commit", daemon=True
            )
            self._thread.start()
        if len(self._queue) in (1, GROUP_TARGET):
            # wake the committer for a group's first run (it then waits up to
            # GROUP_WAIT_S for more) or for a full group: two wake-ups per group
            self._cond.notify_all()

    def _wait_for_committer(self) -> None:
        # (not Thread.join: a join interrupted by Ctrl-C may take the thread for ended)
        with self._cond:
            while not self._dead:
                self._cond.wait()

    def _raise_error(self) -> None:
        with self._cond:
            err, self._error = self._error, None
            self._error_raised = self._error_raised or err is not None
        if err is not None:
            raise err

    def close(self) -> None:
        """Commit every run handed over, discard the others; returns when all are reported.

        Raises the first exception reporting a run raised and that
        :meth:`submitted` did not raise yet.  An interrupt while waiting for
        the committer waits again (the runs are reported), then propagates.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        try:
            if thread is not None:
                try:
                    self._wait_for_committer()
                except KeyboardInterrupt:
                    self._wait_for_committer()
                    raise
        finally:
            with self._cond:
                leftovers = list(self._staged.values())
                self._staged.clear()
                orphans, self._queue = self._queue, []  # (left by a committer that died)
            if orphans:
                self._commit(orphans)
            if leftovers:
                try:
                    self._store.discard_staged([e.staged for e in leftovers])
                finally:
                    for e in leftovers:
                        if e.owner is not None:
                            release_quietly(self._store, e.run_id, e.owner)
        self._raise_error()

    def _loop(self) -> None:
        try:
            self._groups()
        except BaseException as exc:  # (never expected: _commit keeps what reporting raises)
            log.error("the group commit thread failed", exc_info=True)
            self._keep_error(exc)
        finally:  # the submitting thread commits what is handed over from now on
            with self._cond:
                self._dead = True
                self._cond.notify_all()

    def _groups(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                # let the group grow while runs end quickly, for at most GROUP_WAIT_S
                deadline = time.monotonic() + GROUP_WAIT_S
                while len(self._queue) < GROUP_TARGET and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                group, self._queue = self._queue, []
                self._cond.notify_all()  # a submitter waiting for room
            self._commit(group)

    def _keep_error(self, exc: BaseException) -> None:
        with self._cond:
            if self._error is None and not self._error_raised:
                self._error = exc

    def _commit(self, group: list[_Entry]) -> None:
        errors: list[BaseException | None]
        try:
            errors = list(self._store.commit_staged([e.staged for e in group]))
        except BaseException as exc:  # not an I/O error of a file: report it for every run
            log.debug("group commit failed", exc_info=True)
            if not isinstance(exc, Exception):
                self._keep_error(exc)
            errors = [exc] * len(group)
            try:
                self._store.discard_staged([e.staged for e in group])
            except BaseException as exc2:
                log.warning("could not remove the temp files of %d records: %s", len(group), exc2)
        for entry, err in zip(group, errors, strict=True):
            if entry.owner is not None:
                release_quietly(self._store, entry.run_id, entry.owner)
            fut = entry.fut
            if err is not None or fut is None:  # (every queued entry has its future)
                fut = cf.Future()
                fut.set_running_or_notify_cancel()
                cause = err if err is not None else RuntimeError("the run was not handed over")
                fut.set_exception(final_not_saved(entry.final, cause, entry.running_shown))
            try:
                self._track(entry.run_id, fut, entry.job)
            except Exception:
                log.exception("run %s: reporting its end failed", entry.run_id)
            except BaseException as exc:  # (SystemExit of a callback: raised in the submitter)
                self._keep_error(exc)
