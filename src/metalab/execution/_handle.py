"""RunHandle: follow, wait for and cancel a submission."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError
from metalab.execution._claims import ClaimedElsewhereError
from metalab.execution._events import Event, EventDispatcher, EventKind
from metalab.execution._worker import NotStartedError, is_interrupt
from metalab.model import ErrorInfo, RunRecord, Status

if TYPE_CHECKING:
    from metalab.execution._executors import Executor
    from metalab.store._base import Store

__all__ = ["RunHandle", "RunStatus"]

log = logging.getLogger("metalab.execution")


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Counts of one submission.

    ``total`` is every run of the experiment; ``skipped`` already succeeded
    earlier (resume).  ``success``/``failed``/``cancelled`` count runs that
    ended in this submission (``cancelled`` includes queued runs that never
    started because of :meth:`RunHandle.cancel`).  ``done = success + failed
    + cancelled + skipped`` and ``pending = total - done - running``, so a
    finished submission has ``done == total``.
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

    @property
    def finished(self) -> bool:
        return self.done >= self.total


class RunHandle:
    """A submission of an experiment: status, waiting, results, cancellation.

    Thread-safe.  Executors are shut down when every run has ended.
    """

    def __init__(
        self,
        store: Store,
        experiment_id: str,
        *,
        total: int,
        executor: Executor,
        dispatcher: EventDispatcher,
        cancel_flag: threading.Event,
        on_finish: list[Any] | None = None,
    ) -> None:
        self._store = store
        self._experiment_id = experiment_id
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
        self._running: set[str] = set()
        self._ended: set[str] = set()
        self._futures: dict[str, cf.Future[Any]] = {}
        self._submitting = True
        self._finished = threading.Event()
        self._shutdown_done = False
        self._interrupted = False

    # ----------------------------------------------------------- properties
    @property
    def store(self) -> Store:
        """The (scoped) store holding this experiment's results."""
        return self._store

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def status(self) -> RunStatus:
        """A consistent snapshot of the counts (see :class:`RunStatus`)."""
        with self._lock:
            done = self._success + self._failed + self._cancelled + self._skipped
            running = len(self._running)
            return RunStatus(
                total=self._total,
                done=done,
                success=self._success,
                failed=self._failed,
                cancelled=self._cancelled,
                running=running,
                pending=max(0, self._total - done - running),
                skipped=self._skipped,
            )

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

    def _track(self, run_id: str, fut: cf.Future[Any]) -> None:
        with self._lock:
            self._expected += 1
            self._futures[run_id] = fut
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
        elif isinstance(exc, ClaimedElsewhereError):
            with self._lock:
                if run_id in self._ended:
                    return
                self._ended.add(run_id)
                self._running.discard(run_id)
                self._skipped += 1
            self._events.emit(
                Event(EventKind.RUN_SKIPPED, run_id, self._experiment_id, reason=str(exc))
            )
            self._check_finished()
        else:
            log.error("run %s could not be executed: %s: %s", run_id, type(exc).__name__, exc)
            self._end(run_id, None, error=ErrorInfo.from_exception(exc))

    def _end(
        self,
        run_id: str,
        record: RunRecord | None,
        *,
        reason: str | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        with self._lock:
            if run_id in self._ended:
                return
            self._ended.add(run_id)
            was_running = run_id in self._running
            self._running.discard(run_id)
            if record is not None:
                status = record.status
            elif error is not None:
                status = Status.FAILED
            else:
                status = Status.CANCELLED
            if status is Status.SUCCESS:
                self._success += 1
            elif status is Status.FAILED:
                self._failed += 1
            else:
                self._cancelled += 1
            if is_interrupt(record):
                self._interrupted = True
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
        if is_interrupt(record):
            # Ctrl-C inside one run stops the whole submission
            self.cancel()
        self._check_finished()

    def _check_finished(self) -> None:
        with self._lock:
            if self._finished.is_set() or self._submitting:
                return
            if len(self._ended) < self._expected:
                return
            self._finished.set()
        # outside the lock: hooks may read the status or take other locks
        self._shutdown_executor(wait=False)
        for cb in self._on_finish:
            try:
                cb()
            except Exception:
                log.exception("finish hook failed (ignored)")

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
        same through a shared flag.  Returns at once; use :meth:`wait`.
        """
        self._cancel_flag.set()
        try:
            self._executor.cancel_running()
        except Exception:
            log.exception("could not signal cancellation to %r", self._executor)
        with self._lock:
            futures = list(self._futures.values())
        for fut in futures:
            fut.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run has ended; True if so, False on timeout.

        Ctrl-C while waiting cancels the submission and re-raises.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._finished.is_set():
                step = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if step <= 0:
                    return False
                self._finished.wait(step)
        except KeyboardInterrupt:
            self.cancel()
            raise
        self._shutdown_executor(wait=True)
        return True

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the submission and return its :class:`~metalab.analysis.Results`.

        Raises:
            ExecutionError: ``timeout`` seconds passed before the runs ended.
            KeyboardInterrupt: Ctrl-C while waiting (the submission is cancelled).
        """
        if not self.wait(timeout):
            st = self.status
            raise ExecutionError(
                f"{st.pending + st.running} run(s) of {self._experiment_id!r} still pending or "
                f"running after {timeout} s; call result() again to keep waiting or cancel()"
            )
        from metalab.analysis import load_results

        return load_results(self._store)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            self.cancel()
        self.wait()

    def __repr__(self) -> str:
        st = self.status
        return (
            f"RunHandle({self._experiment_id!r}, done={st.done}/{st.total}, "
            f"running={st.running}, failed={st.failed})"
        )
