"""A submission as handed to an executor, and how executors of single runs carry it out.

:func:`metalab.run` resolves what to execute (the store, the specs, resume)
into a :class:`Batch` and calls :meth:`Executor.submit_batch
<metalab.execution.Executor.submit_batch>`, which returns a
:class:`~metalab.execution._handle.Handle`.  Executors that return a future
per run (serial, thread, process, Dask) share :func:`launch_local`: it
stores the manifest, makes a :class:`~metalab.execution._handle.RunHandle`,
turns each pending run into a :class:`~metalab.execution._worker.Job` and
feeds the executor.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from metalab.execution._capture import logging_routed
from metalab.execution._commit import GroupCommitter
from metalab.execution._events import EventCallback, EventDispatcher
from metalab.execution._handle import JobExecutor, RunHandle
from metalab.execution._progress import progress_reporter
from metalab.execution._worker import EXIT_SIGTERM, Job, is_interrupt, sigterm_exit
from metalab.store import FileStore

__all__ = ["Batch", "BatchExecutor", "launch_local"]


@dataclass
class Batch:
    """The runs of one :func:`metalab.run` call, resolved.

    Attributes:
        experiment: the :class:`~metalab.Experiment`.
        store: the store scoped to the experiment.
        specs: every run spec of the experiment, in order.
        pending: ``(spec, previous attempt)`` of the runs to execute (0: no record yet).
        skipped: ids of the runs ``resume`` skips (they already succeeded).
        manifest: the experiment manifest to store (the executor stores it).
        submitted_at: when :func:`metalab.run` was called.
        derived_metrics: derived metric references, already checked.
        context_blob: the pickled context for out-of-process executors (None in process).
        resume: skip runs that already succeeded, also when found so after claiming.
        progress / on_event: what the handle reports to (progress: see
            :func:`~metalab.execution._progress.progress_reporter`).
        code_provenance: the git state and package versions of the launch (run provenance).
    """

    experiment: Any
    store: Any
    specs: list[Any]
    pending: list[tuple[Any, int]]
    skipped: list[str]
    manifest: dict[str, Any]
    submitted_at: datetime
    derived_metrics: tuple[Any, ...] = ()
    context_blob: Callable[[], bytes] | None = None
    resume: bool = True
    progress: bool | None = None
    on_event: EventCallback | None = None
    code_provenance: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = dict(getattr(self.experiment, "metadata", None) or {})

    @property
    def experiment_id(self) -> str:
        return str(self.experiment.experiment_id)

    @property
    def run_ids(self) -> list[str]:
        return [spec.run_id for spec in self.specs]

    def job(self, spec: Any, previous_attempt: int, handle: RunHandle) -> Job:
        """The job of one pending run, reporting to ``handle``."""
        return Job(
            spec=spec,
            operation=self.experiment.operation,
            context=self.experiment.context,
            store=self.store,
            attempt=previous_attempt + 1,
            metadata=self.metadata,
            derived_metrics=self.derived_metrics,
            cancel_flag=handle._cancel_flag,
            on_started=handle._started,
            context_blob=self.context_blob,
            resume=self.resume,
            code_provenance=self.code_provenance,
        )


class BatchExecutor(JobExecutor, Protocol):
    """What :func:`launch_local` needs of an executor."""

    @property
    def runs_in_caller(self) -> bool: ...


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """In the main thread, turn SIGTERM into SystemExit while runs execute here."""
    installed = False
    old: Any = None
    if threading.current_thread() is threading.main_thread():
        try:
            old = signal.getsignal(signal.SIGTERM)
            if old in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, sigterm_exit)
                installed = True
        except (ValueError, OSError, AttributeError):
            installed = False
    try:
        yield
    finally:
        if installed:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, old)


def launch_local(executor: BatchExecutor, batch: Batch) -> RunHandle:
    """Store the manifest and hand every pending run of ``batch`` to ``executor`` as a job.

    With an executor whose runs execute in the caller (``runs_in_caller``),
    this returns when every run has ended, including runs another live
    launch was executing (they are waited for).

    Raises:
        KeyboardInterrupt / SystemExit: Ctrl-C or SIGTERM while a run
            executed in this thread (the submission is cancelled first).
        Whatever storing the manifest or submitting a job raises (the
        submission is cancelled first).
    """
    batch.store.put_experiment_manifest(batch.experiment_id, batch.manifest, timestamp=batch.submitted_at)
    handle = _new_handle(executor, batch)
    for run_id in batch.skipped:
        handle._skip(run_id, "already succeeded (resume=True)")
    interrupt = _submit_pending(handle, executor, batch)
    if interrupt is not None:
        # the interrupt hit a run executing in this thread: stop the caller too
        handle.wait()
        if interrupt == "SystemExit":
            raise SystemExit(EXIT_SIGTERM)
        raise KeyboardInterrupt
    if executor.runs_in_caller and not handle.done:
        # runs another launch is executing: such a run() returns when every run has ended
        try:
            with sigterm_as_exit():
                handle.wait()
        except BaseException:  # Ctrl-C (wait() cancels) or SIGTERM: stop waiting for them
            handle.cancel()
            raise
    return handle


def _new_handle(executor: BatchExecutor, batch: Batch) -> RunHandle:
    """The handle of the submission, with its progress bar and event callback."""
    dispatcher = EventDispatcher()
    finish_hooks: list[Any] = []
    total = len(batch.specs)
    reporter = progress_reporter(batch.progress, batch.experiment_id, total)
    if reporter is not None:
        dispatcher.add(reporter[0])
        finish_hooks.append(reporter[1])
    if batch.on_event is not None:
        dispatcher.add(batch.on_event)
    return RunHandle(
        batch.store,
        batch.experiment_id,
        total=total,
        executor=executor,
        dispatcher=dispatcher,
        cancel_flag=threading.Event(),
        on_finish=finish_hooks,
        run_ids=batch.run_ids,
    )


def _submit_pending(handle: RunHandle, executor: BatchExecutor, batch: Batch) -> str | None:
    """Hand every pending run to ``executor`` until the submission is cancelled.

    Returns the type of interrupt (``"KeyboardInterrupt"`` or ``"SystemExit"``)
    that hit a run executing in this thread, else None.  Any other exception
    cancels the submission and propagates.
    """
    cancel_flag = handle._cancel_flag
    interrupt: str | None = None
    # runs that execute here, one after another, share one installation of the log routing
    # and commit their final records in groups (reported done once durable)
    routing = logging_routed() if executor.runs_in_caller else contextlib.nullcontext()
    committer = _group_committer(executor, batch, handle)
    try:
        with sigterm_as_exit(), routing:
            for spec, attempt in batch.pending:
                if cancel_flag.is_set():
                    break
                job = batch.job(spec, attempt, handle)
                job.committer = committer
                fut = executor.submit(job)
                # (only a run executed in this thread interrupts the caller; a thread run
                # that is already done when checked is not one)
                if executor.runs_in_caller and fut.done() and not fut.cancelled() \
                        and fut.exception() is None:
                    record = fut.result()
                    if is_interrupt(record):
                        interrupt = record.error.type
                        handle.cancel()  # (its report may wait for the group commit)
                if committer is None or not committer.submitted(spec.run_id, fut, job):
                    handle._track(spec.run_id, fut, job)
    except KeyboardInterrupt:
        interrupt = interrupt or "KeyboardInterrupt"  # a SIGTERM seen first still wins
        handle.cancel()
    except BaseException:
        handle.cancel()
        _close_submission(handle, batch, committer)
        raise
    _close_submission(handle, batch, committer)
    return interrupt


def _group_committer(executor: BatchExecutor, batch: Batch, handle: RunHandle) -> GroupCommitter | None:
    """A group committer for runs executing in this thread on a store that stages records."""
    if executor.runs_in_caller and _stages_records(batch.store):
        return GroupCommitter(batch.store, handle._track)
    return None


def _stages_records(store: Any) -> bool:
    """True if ``store`` stages final records (``stage_run_record`` and co.) and its
    final records need no other write: a FileStore subclass that overrides
    ``put_run_record`` or ``put_run_data`` (to see or index each record) gets
    every record through them instead."""
    if not all(callable(getattr(store, m, None)) for m in _STAGING_METHODS):
        return False
    if isinstance(store, FileStore):
        cls = type(store)
        return all(
            getattr(cls, m) is getattr(FileStore, m) and m not in vars(store)
            for m in ("put_run_record", "put_run_data")
        )
    return True


_STAGING_METHODS = ("stage_run_record", "commit_staged", "discard_staged")


def _close_submission(handle: RunHandle, batch: Batch, committer: GroupCommitter | None = None) -> None:
    """Commit the staged final records, account for runs never handed to the
    executor, then let the handle finish."""
    try:
        if committer is not None:
            committer.close()
    finally:
        try:
            tracked = handle._futures
            for spec, _ in batch.pending:
                if spec.run_id not in tracked:
                    handle._not_submitted(spec.run_id)
        finally:
            handle._submission_complete()
