"""Handles: follow, wait for and cancel a submission.

:class:`Handle` is what every executor's :meth:`~metalab.execution.Executor.submit_batch`
returns; :class:`RunHandle` is the handle of executors that hand back a future
per run (serial, thread, process, Dask); the SLURM handle polls the store and
the queue instead.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import dataclasses
import errno
import logging
import os
import shlex
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from metalab._errors import CorruptRecordError, ExecutionError
from metalab._internal._owner import EMPTY_GRACE_S, holder_is_stale, owner_label, parse_owner
from metalab.execution._claims import ClaimedElsewhereError, CompletedElsewhereError
from metalab.execution._events import Event, EventDispatcher, EventKind
from metalab.execution._worker import (
    FinalRecordNotSavedError,
    NotStartedError,
    StartUnknownError,
    _os_error_of,
    is_interrupt,
)
from metalab.model import ErrorInfo, RunRecord, Status

if TYPE_CHECKING:
    from metalab.execution._worker import Job
    from metalab.store import Store

__all__ = ["Handle", "JobExecutor", "RunHandle", "RunStatus", "submission_results"]

log = logging.getLogger("metalab.execution")

_FINAL = (Status.SUCCESS, Status.FAILED, Status.CANCELLED)
_DISK_FULL_ERRNOS = frozenset(
    e for e in (getattr(errno, "ENOSPC", None), getattr(errno, "EDQUOT", None)) if e is not None
)
#: hex digits of the random part of a local submission's job id
_LOCAL_JOB_ID_HEX = 12
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Counts of one submission.

    ``total`` is every run of the experiment.  ``skipped`` runs succeeded
    without this submission executing them: a ``success`` record existed when
    it got to them (resume), or another launch completed them while this one
    waited.  ``success``/``failed``/``cancelled`` count runs this submission
    executed (``failed`` also counts a run another launch was executing that
    ended ``failed`` while this one waited; ``cancelled`` includes queued runs
    that never started because of :meth:`RunHandle.cancel`), so the
    ``success`` counts of concurrent launches add up to the runs executed.
    A run whose task was cancelled while it may have been executing (Dask)
    counts as ``running`` until the store tells what it did.
    ``lost`` runs ended but their final record could not be written (the
    store shows them running, then lost).  ``elsewhere`` runs are being
    executed by another live launch (their claim is live): they are waited
    for and then counted as above, or executed here if that launch dies (see
    :attr:`RunHandle.claimed_elsewhere`).  ``done = success +
    failed + cancelled + skipped + lost`` and ``pending = total - done -
    running - elsewhere``, so a finished submission has ``done == total``.
    """

    total: int
    done: int
    success: int
    failed: int
    cancelled: int
    running: int
    pending: int
    skipped: int
    lost: int = 0
    elsewhere: int = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def completed(self) -> int:
        """Runs this submission executed successfully (the original metalab's name for ``success``)."""
        return self.success

    @property
    def in_flight(self) -> int:
        """Runs executing now, here or in another live launch (``running + elsewhere``)."""
        return self.running + self.elsewhere


def _disk_full(exc: BaseException | None, text: str = "") -> OSError | bool:
    """The disk-full OSError in ``exc``'s chain, True if only the text says so, else False."""
    if exc is not None:
        cause = _os_error_of(exc)
        if cause is not None and cause.errno in _DISK_FULL_ERRNOS:
            return cause
        if getattr(exc, "errno", None) in _DISK_FULL_ERRNOS:
            return True
        text = text or str(exc)
    return any(t in text for t in _DISK_FULL_TEXTS) or any(f"[Errno {e}]" in text for e in _DISK_FULL_ERRNOS)


#: the interval between looks at runs claimed elsewhere grows by this many seconds per run...
_ELSEWHERE_POLL_PER_RUN_S = 0.002
#: ...up to this many seconds
_ELSEWHERE_POLL_MAX_S = 5.0
#: seconds between two checks of the deadline in ``RunHandle.wait``
_WAIT_STEP_S = 0.2
#: longest error line quoted in the end-of-submission report (longer ones end in "...")
_MAX_REPORTED_LINE = 200
_ELLIPSIS = "..."


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if len(line) <= _MAX_REPORTED_LINE:
        return line
    return line[: _MAX_REPORTED_LINE - len(_ELLIPSIS)] + _ELLIPSIS


def submission_results(store: Store, run_ids: Sequence[str] | None) -> Any:
    """The stored runs of one submission: its ``run_ids`` (all runs of the store's experiment if None).

    The experiment may hold other runs under the same id (an earlier grid, a
    changed seed plan); they are not part of this submission's result.
    """
    from metalab.analysis import load_results

    results = load_results(store)
    if run_ids is None:
        return results
    if len(results) == len(run_ids) and set(results.run_ids) == set(run_ids):
        return results
    return results.subset(run_ids)


class JobExecutor(Protocol):
    """What a :class:`RunHandle` needs of its executor (every :class:`~metalab.execution.Executor` has it)."""

    def submit(self, job: Job) -> cf.Future[Any]: ...

    def cancel_running(self) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...


class Handle(abc.ABC):
    """One submission of an experiment, whatever executes it.

    Contract (checked by :class:`metalab.testing.ExecutorContractTests`):
    :attr:`status` is a consistent :class:`RunStatus` snapshot whose ``done``
    reaches ``total`` once every run has ended; :meth:`wait` blocks until
    then (False on timeout); :meth:`result` returns the stored runs of this
    submission, exactly (skipped ones included); :meth:`cancel` returns at
    once: runs not started yet never start.  Handles are context managers
    (leaving the block waits; an exception cancels first) and thread-safe.
    """

    def __init__(self, store: Store, experiment_id: str) -> None:
        self._store = store
        self._experiment_id = experiment_id
        self._local_job_id = f"local-{uuid.uuid4().hex[:_LOCAL_JOB_ID_HEX]}"

    @property
    def job_id(self) -> str:
        """An id of this submission: the scheduler's job id(s) for SLURM, ``"local-<hex>"`` otherwise."""
        return self._local_job_id

    @property
    def is_complete(self) -> bool:
        """The original metalab's name for :attr:`done`."""
        return self.done

    @property
    def store(self) -> Store:
        """The (scoped) store the runs are written to."""
        return self._store

    @property
    def experiment_id(self) -> str:
        """The experiment's ``name:version``."""
        return self._experiment_id

    @property
    @abc.abstractmethod
    def status(self) -> RunStatus:
        """The counts of the submission now."""

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """True once every run of the submission has ended."""

    @property
    @abc.abstractmethod
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run has ended; True if so, False when ``timeout`` seconds passed first."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Cancel the submission (returns at once; use :meth:`wait`)."""

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the submission and return its :class:`~metalab.analysis.Results`.

        Raises:
            ExecutionError: ``timeout`` seconds passed before the runs ended.
            KeyboardInterrupt: Ctrl-C while waiting (the submission is cancelled).
        """
        if not self.wait(timeout):
            st = self.status
            raise ExecutionError(
                f"{st.pending + st.running} run(s) of {self.experiment_id!r} still pending or "
                f"running after {timeout} s; call result() again to keep waiting or cancel()"
            )
        return submission_results(self.store, self._result_run_ids())

    def _result_run_ids(self) -> Sequence[str] | None:
        """The run ids :meth:`result` returns (None: every run of the store's experiment)."""
        return None

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            self.cancel()
        self.wait()


class RunHandle(Handle):
    """A submission of an experiment: status, waiting, results, cancellation.

    Thread-safe.  Executors are shut down when every run has ended.  A run
    another live launch is executing is waited for (its final record is
    polled); if that launch dies first, the run is executed here.  When the
    submission has ended, failures are reported once on the
    ``metalab.execution`` logger: a WARNING with their count and the first
    error line, or an ERROR naming the folder when the disk is full.
    """

    #: seconds between two looks at runs claimed by another launch (at most; grows with their number)
    ELSEWHERE_POLL_S = 0.25

    def __init__(
        self,
        store: Store,
        experiment_id: str,
        *,
        total: int,
        executor: JobExecutor,
        dispatcher: EventDispatcher,
        cancel_flag: threading.Event,
        on_finish: list[Any] | None = None,
        run_ids: Sequence[str] | None = None,
    ) -> None:
        super().__init__(store, experiment_id)
        self._run_ids = tuple(run_ids) if run_ids is not None else None
        self._executor = executor
        self._events = dispatcher
        self._cancel_flag = cancel_flag
        self._on_finish = list(on_finish or [])
        self._lock = threading.RLock()
        self._total = total
        self._skipped = 0
        self._expected = 0  # runs handed to the executor
        self._success = 0
        self._failed = 0
        self._cancelled = 0
        self._lost = 0
        self._running: set[str] = set()
        self._ended: set[str] = set()
        self._futures: dict[str, cf.Future[Any]] = {}
        self._jobs: dict[str, Job] = {}
        self._elsewhere: dict[str, str] = {}  # run id -> owner string of its claim ("" unknown)
        # run id -> owner token of its own task, cancelled while it may have been executing
        self._unsettled: dict[str, str] = {}
        # run id -> (monotonic time of the first failed read in a row, last error)
        self._unreadable: dict[str, tuple[float, BaseException]] = {}
        self._poller: threading.Thread | None = None
        self._warned_elsewhere = False
        # (run id, "Type: first line", disk-full OSError / True / False) in order of failure
        self._problems: list[tuple[str, str, OSError | bool]] = []
        self._submitting = True
        self._finishing = False
        self._finished = threading.Event()
        self._shutdown_done = False

    # ----------------------------------------------------------- properties
    @property
    def executor(self) -> JobExecutor:
        return self._executor

    @property
    def status(self) -> RunStatus:
        """A consistent snapshot of the counts (see :class:`RunStatus`)."""
        with self._lock:
            done = self._success + self._failed + self._cancelled + self._skipped + self._lost
            running = len(self._running) + len(self._unsettled)
            elsewhere = len(self._elsewhere)
            return RunStatus(
                total=self._total,
                done=done,
                success=self._success,
                failed=self._failed,
                cancelled=self._cancelled,
                running=running,
                pending=max(0, self._total - done - running - elsewhere),
                skipped=self._skipped,
                lost=self._lost,
                elsewhere=elsewhere,
            )

    @property
    def claimed_elsewhere(self) -> dict[str, str]:
        """Runs another live launch is executing: run id -> ``"claimed by host:pid,
        heartbeat 3 s ago"`` (read from the store now)."""
        with self._lock:
            ids = sorted(self._elsewhere)
        out: dict[str, str] = {}
        for rid in ids:
            try:
                held = self._store.claim_holder(rid)
            except Exception as exc:
                out[rid] = f"claim unreadable ({type(exc).__name__}: {exc})"
                continue
            if held is None:
                out[rid] = "claim released; waiting for its final record"
            else:
                out[rid] = f"claimed by {owner_label(held[0])}, heartbeat {held[1]:.0f} s ago"
        return out

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel_flag.is_set()

    # ------------------------------------------------------- runner hooks
    def _skip(self, run_id: str, reason: str) -> None:
        with self._lock:
            self._skipped += 1
        self._events.emit(Event(EventKind.RUN_SKIPPED, run_id, self._experiment_id, reason=reason))

    def _track(self, run_id: str, fut: cf.Future[Any], job: Job | None = None) -> None:
        with self._lock:
            self._expected += 1
            self._futures[run_id] = fut
            if job is not None:
                self._jobs[run_id] = job

        def _done(f: cf.Future[Any]) -> None:
            self._on_done(run_id, f)

        fut.add_done_callback(_done)

    def _not_submitted(self, run_id: str) -> None:
        """A run that was never handed to the executor because of cancellation."""
        with self._lock:
            self._expected += 1
        self._end(run_id, None, reason="cancelled before it started")

    def _submission_complete(self) -> None:
        with self._lock:
            self._submitting = False
        self._check_finished()

    def _started(self, run_id: str, worker_id: str, at: datetime) -> None:
        with self._lock:
            if run_id in self._ended or run_id in self._running:
                return
            self._running.add(run_id)
        if self._events.active:
            self._events.emit(Event(EventKind.RUN_STARTED, run_id, self._experiment_id, timestamp=at))

    def _on_done(self, run_id: str, fut: cf.Future[Any]) -> None:
        if fut.cancelled():
            self._end(run_id, None, reason="cancelled before it started")
            return
        exc = fut.exception()
        if exc is None:
            self._end(run_id, fut.result())
        elif isinstance(exc, NotStartedError):
            self._end(run_id, None, reason="cancelled before it started")
        elif isinstance(exc, StartUnknownError):
            self._start_unknown(run_id, exc.owner_token)
        elif isinstance(exc, CompletedElsewhereError):
            self._end_skipped(run_id, str(exc))
        elif isinstance(exc, ClaimedElsewhereError):
            self._claimed_elsewhere(run_id, exc.holder)
        elif isinstance(exc, FinalRecordNotSavedError):
            log.debug("run %s: %s", run_id, exc)
            self._end(run_id, None, error=ErrorInfo.from_exception(exc), lost=True, exc=exc)
        else:
            log.debug("run %s could not be executed: %s: %s", run_id, type(exc).__name__, exc)
            self._end(run_id, None, error=ErrorInfo.from_exception(exc), exc=exc)

    def _end_skipped(self, run_id: str, reason: str) -> None:
        """A run found succeeded (by another launch) when this submission got to it."""
        with self._lock:
            if run_id in self._ended:
                return
            self._ended.add(run_id)
            self._elsewhere.pop(run_id, None)
            self._unsettled.pop(run_id, None)
            self._running.discard(run_id)
            self._skipped += 1
        self._events.emit(Event(EventKind.RUN_SKIPPED, run_id, self._experiment_id, reason=reason))
        self._check_finished()

    def _end_elsewhere(self, run_id: str, record: RunRecord, holder: str) -> None:
        """A run another launch executed while this submission waited ended with ``record``."""
        if record.status is Status.SUCCESS:
            who = f" ({owner_label(holder)})" if holder else ""
            self._end_skipped(run_id, f"completed by another launch{who} while this one waited")
        else:
            self._end(run_id, record)

    # ------------------------------------------------- runs claimed elsewhere
    def _claimed_elsewhere(self, run_id: str, holder: str) -> None:
        """Another live launch holds the claim: wait for it (see the class docstring)."""
        if self._cancel_flag.is_set():
            self._end(run_id, None, reason="this submission was cancelled; another launch is "
                      "executing the run")
            return
        first = False
        with self._lock:
            if run_id in self._ended:
                return
            self._running.discard(run_id)
            self._elsewhere[run_id] = holder
            if not self._warned_elsewhere:
                self._warned_elsewhere = first = True
            self._start_poller()
        if first:
            log.warning(
                "run %s of %s is being executed by another launch (claimed by %s); this submission "
                "waits for its final record, and runs it here if that launch dies "
                "(handle.claimed_elsewhere lists such runs)",
                run_id, self._experiment_id, owner_label(holder) if holder else (
                    "a claim file that is still empty: being written, or left by a launch "
                    f"that died, and then taken over after {EMPTY_GRACE_S:g} s"
                ),
            )

    def _start_unknown(self, run_id: str, token: str) -> None:
        """This submission's own task of ``run_id`` was cancelled and may have been
        executing: settle the run from the store (:meth:`_look_own`), watched with the
        runs held elsewhere.  The submission's cancellation does not end it at once."""
        with self._lock:
            if run_id in self._ended:
                return
            self._running.discard(run_id)
            self._unsettled[run_id] = token
            self._start_poller()

    def _start_poller(self) -> None:
        """Start the thread that watches runs held elsewhere or unsettled (lock held)."""
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll_elsewhere, name="metalab-claimed-elsewhere", daemon=True
            )
            self._poller.start()

    def _poll_elsewhere(self) -> None:
        while True:
            with self._lock:
                ids = list(self._elsewhere) + list(self._unsettled)
                if not ids:
                    self._poller = None
                    return
            for rid in ids:
                try:
                    if rid in self._unsettled:
                        self._look_own(rid)
                    else:
                        self._look_elsewhere(rid)
                except Exception:
                    log.exception("checking run %s claimed by another launch failed (retrying)", rid)
            self._finished.wait(min(
                _ELSEWHERE_POLL_MAX_S,
                max(self.ELSEWHERE_POLL_S, _ELSEWHERE_POLL_PER_RUN_S * len(ids)),
            ))

    def _look_elsewhere(self, rid: str) -> None:
        """One look at a run another launch holds: its final record ends it here; a
        claim that is gone or stale (its owner died) sends the run to the executor."""
        from metalab.query import lost_after_seconds

        if self._cancel_flag.is_set():
            with self._lock:
                self._elsewhere.pop(rid, None)
            self._end(rid, None, reason="this submission was cancelled; another launch is "
                      "executing the run")
            return
        job = self._jobs.get(rid)
        readable, rec = self._read_record(rid)
        if readable and self._ended_elsewhere(rid, rec, job):
            return
        held = self._store.claim_holder(rid)
        if held is not None and not holder_is_stale(held[0], held[1], lost_after_seconds()):
            with self._lock:
                if rid in self._elsewhere:
                    self._elsewhere[rid] = held[0]
            return  # its launch is alive: wait, whether the record reads or not
        if not readable:  # the holder is gone and nothing tells whether it finished
            self._give_up_if_unreadable(rid, lost_after_seconds())
            return
        if job is None:  # (not submitted by this handle: nothing to run again)
            return
        if held is None:
            # released: the holder may have written its final record just before
            readable, rec = self._read_record(rid)
            if not readable or self._ended_elsewhere(rid, rec, job):
                return
        self._run_again(rid, job, rec)

    def _look_own(self, rid: str) -> None:
        """One look at a run whose own task was cancelled while it may have been executing.

        A final record of this attempt ends it as that record (a success
        counts as success); the task's live claim is waited for; a claim the
        task left stale (its worker died) ends it lost; a live claim of
        another launch, or no claim and no such record, ends it cancelled:
        the task had not started, and will not (it looks at the executor's
        cancel signal right after claiming, and the signal was set before the
        task was cancelled).  A record of this attempt written by another
        launch cannot be told apart from the task's own (counted here too).
        """
        from metalab.query import lost_after_seconds

        with self._lock:
            token = self._unsettled.get(rid)
            job = self._jobs.get(rid)
        if token is None:
            return
        readable, rec = self._read_record(rid)
        if readable and self._ended_own(rid, rec, job):
            return
        held = self._store.claim_holder(rid)
        if held is not None:
            owner = parse_owner(held[0])
            ours = bool(token) and owner is not None and owner.token == token
            stale = holder_is_stale(held[0], held[1], lost_after_seconds())
            if ours and not stale:
                return  # the task executes: wait for its final record or its release
            if ours:
                error = ExecutionError(
                    f"run {rid}: the Dask worker executing it stopped (its claim has had no "
                    f"heartbeat for {held[1]:.0f} s); the store shows it running or not at all. "
                    "Run the experiment again with resume=True"
                )
                self._end(rid, None, error=ErrorInfo.from_exception(error), lost=True, exc=error)
                return
            if not stale:
                self._end(rid, None, reason="this submission was cancelled; another launch is "
                          "executing the run")
                return
        if not readable:
            self._give_up_if_unreadable(rid, lost_after_seconds())
            return
        # released: the task may have written its final record just before
        readable, rec = self._read_record(rid)
        if not readable or self._ended_own(rid, rec, job):
            return
        if rec is not None and rec.attempt >= (job.attempt if job is not None else 1):
            # a record of this attempt that is not final: the task started, then
            # released the run without its final record (it could not be written)
            error = ExecutionError(
                f"run {rid}: its Dask task started (the store shows it {rec.status.value}) "
                "but its final record was not written; run the experiment again with "
                "resume=True")
            self._end(rid, None, error=ErrorInfo.from_exception(error), lost=True, exc=error)
            return
        self._end(rid, None, reason="cancelled before it started")

    def _ended_own(self, rid: str, rec: RunRecord | None, job: Job | None) -> bool:
        """End ``rid`` with ``rec`` if it is a final record of this submission's attempt."""
        if rec is None or rec.status not in _FINAL:
            return False
        if rec.attempt >= (job.attempt if job is not None else 1):
            self._end(rid, rec)
            return True
        return False

    def _read_record(self, rid: str) -> tuple[bool, RunRecord | None]:
        """``(True, record or None)``; ``(False, None)`` when it cannot be read now.

        A damaged record reads as absent (readers skip it; a new attempt
        replaces it).  Any other failure (I/O error, database down) says
        nothing about whether the run is done: the caller looks again at the
        next poll, never treating it as "not done".
        """
        try:
            rec = self._store.get_run_record(rid)
        except CorruptRecordError as exc:
            log.debug("run %s: its record is damaged (read as absent): %s", rid, exc)
            self._unreadable.pop(rid, None)
            return True, None
        except Exception as exc:
            first = rid not in self._unreadable
            log.log(logging.WARNING if first else logging.DEBUG,
                    "run %s: could not read its record (looking again later): %s", rid, exc)
            since = self._unreadable[rid][0] if not first else time.monotonic()
            self._unreadable[rid] = (since, exc)
            return False, None
        self._unreadable.pop(rid, None)
        return True, rec

    def _give_up_if_unreadable(self, rid: str, limit: float) -> None:
        """End ``rid``, whose holder is gone, as lost once its record has been
        unreadable for ``limit`` seconds in a row: nothing can tell whether the
        other launch finished it (a shorter outage is waited out)."""
        since, exc = self._unreadable[rid]
        waited = time.monotonic() - since
        if waited < limit:
            return
        self._unreadable.pop(rid, None)
        error = ExecutionError(
            f"run {rid}: its record could not be read for {waited:.0f} s while another launch "
            f"held it ({type(exc).__name__}: {exc}); whether it finished is unknown. Make the "
            "record readable, then run the experiment again (resume skips it if it succeeded)"
        )
        self._end(rid, None, error=ErrorInfo.from_exception(error), lost=True, exc=error)

    def _ended_elsewhere(self, rid: str, rec: RunRecord | None, job: Job | None) -> bool:
        """End ``rid`` here if ``rec`` is a final record that settles it for this submission."""
        if rec is None or rec.status not in _FINAL or job is None:
            return False
        if (rec.status is Status.SUCCESS and job.resume) or rec.attempt >= job.attempt:
            self._end_elsewhere(rid, rec, self._elsewhere.get(rid, ""))
            return True
        return False

    def _run_again(self, rid: str, job: Job, rec: RunRecord | None) -> None:
        """The launch that held ``rid`` is gone: hand the run to this submission's executor."""
        attempt = max(job.attempt, rec.attempt + 1 if rec is not None else 1)
        again = dataclasses.replace(job, attempt=attempt)
        with self._lock:
            if self._elsewhere.pop(rid, None) is None:
                return
            self._jobs[rid] = again
        if self._cancel_flag.is_set():  # (cancelled meanwhile: queued runs never start)
            self._end(rid, None, reason="this submission was cancelled before the run, "
                      "left by a launch that is gone, was run again")
            return
        log.info("run %s: the launch that held it is gone; running it here", rid)
        try:
            fut = self._executor.submit(again)
        except Exception as exc:
            self._end(rid, None, error=ErrorInfo.from_exception(exc), exc=exc)
            return
        with self._lock:
            self._futures[rid] = fut

        def _done(f: cf.Future[Any]) -> None:
            self._on_done(rid, f)

        fut.add_done_callback(_done)

    # ------------------------------------------------------------- endings
    def _end(
        self,
        run_id: str,
        record: RunRecord | None,
        *,
        reason: str | None = None,
        error: ErrorInfo | None = None,
        lost: bool = False,
        exc: BaseException | None = None,
    ) -> None:
        with self._lock:
            if run_id in self._ended:
                return
            self._ended.add(run_id)
            self._elsewhere.pop(run_id, None)
            self._unsettled.pop(run_id, None)
            was_running = run_id in self._running
            self._running.discard(run_id)
            if record is not None:
                status = record.status
            elif error is not None:
                status = Status.FAILED
            else:
                status = Status.CANCELLED
            if lost:
                self._lost += 1
            elif status is Status.SUCCESS:
                self._success += 1
            elif status is Status.FAILED:
                self._failed += 1
            else:
                self._cancelled += 1
            info = record.error if record is not None else error
            if lost or status is Status.FAILED:
                text = f"{info.type}: {_first_line(info.message)}" if info else "failed"
                self._problems.append(
                    (run_id, text, _disk_full(exc, info.message if info else ""))
                )
        if self._events.active:
            self._emit_end(run_id, record, was_running, error, reason)
        if is_interrupt(record):
            # Ctrl-C inside one run stops the whole submission
            self.cancel()
        self._check_finished()

    def _emit_end(
        self, run_id: str, record: RunRecord | None, was_running: bool, error: ErrorInfo | None,
        reason: str | None,
    ) -> None:
        """The events of a run's end (and of its start, if it was not reported yet)."""
        if record is not None and not was_running:
            self._events.emit(
                Event(
                    EventKind.RUN_STARTED,
                    run_id,
                    self._experiment_id,
                    timestamp=record.started_at or record.finished_at or datetime.now(),
                )
            )
        if record is not None:
            kind = {
                Status.SUCCESS: EventKind.RUN_FINISHED,
                Status.FAILED: EventKind.RUN_FAILED,
            }.get(record.status, EventKind.RUN_CANCELLED)
            event = Event(
                kind,
                run_id,
                self._experiment_id,
                duration_ms=record.duration_ms,
                metrics=dict(record.metrics),
                error=record.error,
            )
        elif error is not None:
            event = Event(EventKind.RUN_FAILED, run_id, self._experiment_id, error=error)
        else:
            event = Event(EventKind.RUN_CANCELLED, run_id, self._experiment_id, reason=reason)
        self._events.emit(event)

    def _check_finished(self) -> None:
        with self._lock:
            if self._finishing or self._submitting:
                return
            if len(self._ended) < self._expected:
                return
            self._finishing = True
        # outside the lock: hooks may read the status or take other locks
        try:
            self._shutdown_executor(wait=False)
            for cb in self._on_finish:
                try:
                    cb()
                except Exception:
                    log.exception("finish hook failed (ignored)")
            try:
                self._report()
            except Exception:
                log.exception("the end-of-run report failed (ignored)")
        finally:
            # (after the report: whoever waits for the handle sees it logged)
            self._finished.set()

    def _report(self) -> None:
        """Once, when the submission has ended: what failed, or that the disk is full."""
        with self._lock:
            problems = list(self._problems)
            total = self._total
            lost = self._lost
        if not problems:
            return
        full = [(rid, text, df) for rid, text, df in problems if df]
        if full:
            folder = ""
            for _rid, _text, df in full:
                if isinstance(df, OSError) and df.filename:
                    folder = os.path.dirname(str(df.filename))
                    break
            if getattr(self._store, "supports_working_directory", False):
                try:
                    folder = self._store.get_working_directory()
                except Exception as exc:  # the message then names the file's folder
                    log.debug("could not get the store's folder for the report: %s", exc)
            where = f" in {folder}" if folder else ""
            unsaved = f"; {lost} of them ended but their final record could not be written" if lost else ""
            log.error(
                "No space left on device%s: %d of %d runs of %s could not be executed or "
                "recorded%s. Free space there, then run the experiment again (resume=True keeps "
                "the runs that succeeded and runs the others)",
                where, len(full), total, self._experiment_id, unsaved,
            )
            problems = [p for p in problems if not p[2]]
            if not problems:
                return
        rid, text, _ = problems[0]
        log.warning(
            "%d of %d runs failed; first: run %s: %s (metalab runs show %s%s for the traceback)",
            len(problems), total, rid, text, rid, self._store_hint(),
        )

    def _store_hint(self) -> str:
        """`` -s ROOT -e ID`` for a file store (no locator of other stores: it may hold a password)."""
        config = getattr(self._store, "config", None)
        root = getattr(config, "root", None)
        if getattr(config, "scheme", "") != "file" or not isinstance(root, str):
            return " -s STORE"
        return f" -s {shlex.quote(root)} -e {shlex.quote(self._experiment_id)}"

    def _shutdown_executor(self, wait: bool) -> None:
        if self._shutdown_done and not wait:
            return
        self._shutdown_done = True
        try:
            self._executor.shutdown(wait=wait)
        except Exception:
            log.exception("shutting down %r failed (ignored)", self._executor)

    # ---------------------------------------------------------- public API
    def cancel(self) -> None:
        """Cancel the submission.

        Queued runs never start; running in-process runs see
        ``runtime.cancelled`` (and end ``cancelled`` if they stop through
        ``runtime.check_cancelled()``); runs in worker processes are told the
        same through a shared flag; a run whose task cannot be stopped (Dask)
        is waited for and counted as what it wrote; runs another launch is
        executing count as cancelled at once (not waited for).  Returns at
        once; use :meth:`wait`.
        """
        self._cancel_flag.set()
        try:
            self._executor.cancel_running()
        except Exception:
            log.exception("could not signal cancellation to %r", self._executor)
        with self._lock:
            futures = list(self._futures.values())
            elsewhere = list(self._elsewhere)
        for fut in futures:
            fut.cancel()
        for rid in elsewhere:  # not waited for any more
            self._end(rid, None, reason="this submission was cancelled; another launch is "
                      "executing the run")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run has ended; True if so, False on timeout.

        Ctrl-C while waiting cancels the submission and re-raises.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._finished.is_set():
                step = (
                    _WAIT_STEP_S if deadline is None
                    else min(_WAIT_STEP_S, deadline - time.monotonic())
                )
                if step <= 0:
                    return False
                self._finished.wait(step)
        except KeyboardInterrupt:
            self.cancel()
            raise
        self._shutdown_executor(wait=True)
        return True

    def _result_run_ids(self) -> Sequence[str] | None:
        return self._run_ids

    def __repr__(self) -> str:
        st = self.status
        return (
            f"RunHandle({self._experiment_id!r}, done={st.done}/{st.total}, "
            f"running={st.running}, failed={st.failed})"
        )
