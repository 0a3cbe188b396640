"""The per-run worker logic shared by every executor.

:func:`execute_run` runs one operation call end to end: a ``running`` record,
the call with capture/runtime/logging set up, then exactly one final record
(``success``, ``failed`` or ``cancelled``).  In-process executors call it
through :class:`Job`; the process executor ships a picklable
:class:`RunPayload` and rebuilds store, operation and context in the worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import CorruptRecordError, ExecutionError, RunCancelledError
from metalab._internal._atomic import FILE_MODE
from metalab._internal._json import encode_values
from metalab._internal._owner import owner_label
from metalab._internal._time import to_iso, utcnow
from metalab.execution._capture import Capture, RunLog, is_scalar, route_logging, to_scalar
from metalab.execution._claims import (
    RUNNING_RECORD_AFTER_S,
    ClaimedElsewhereError,
    CompletedElsewhereError,
    Heartbeat,
    new_owner,
)
from metalab.execution._runtime import CancelFlag, Runtime
from metalab.execution._stdio import route_std
from metalab.model import ErrorInfo, Provenance, RunRecord, Status
from metalab.query import heartbeat_interval

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = [
    "EXIT_SIGTERM",
    "FinalRecordNotSavedError",
    "Job",
    "NotStartedError",
    "RunPayload",
    "StartUnknownError",
    "StartedCallback",
    "execute_run",
    "final_not_saved",
    "is_interrupt",
    "owner_with_token",
    "process_entry",
    "process_initializer",
    "release_quietly",
    "run_job",
    "sigterm_exit",
]

log = logging.getLogger("metalab.execution")

#: exit status of a process stopped by SIGTERM (the shell's 128 + signal number)
EXIT_SIGTERM = 128 + signal.SIGTERM

StartedCallback = Callable[[str, str, datetime], None]  # (run_id, worker_id, started_at)
DerivedSpec = Sequence[Any]  # callables or "module:func" strings


class NotStartedError(RunCancelledError):
    """A queued run was not started because the submission was cancelled."""


class StartUnknownError(RunCancelledError):
    """The run's task was cancelled, and the executor cannot tell whether it had started.

    A Dask task already executing on a worker is reported cancelled to the
    client at once, yet it goes on and writes its final record.  The handle
    settles such a run from the store (see ``RunHandle``): the final record
    the task wrote, or the task's live claim (waited for), or neither (the run
    did not start).

    Attributes:
        run_id: the run.
        owner_token: the last field of the owner string the task claims the
            run with (:func:`owner_with_token`), ``""`` if unknown.
    """

    def __init__(self, message: str, run_id: str = "", owner_token: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner_token = owner_token

    def __reduce__(self) -> tuple[object, ...]:  # keeps the attributes across processes
        return (type(self), (str(self), self.run_id, self.owner_token))


def owner_with_token(token: str) -> str:
    """A claim owner of the calling process (:func:`~metalab.execution._claims.new_owner`)
    whose random last field is ``token``: whoever made the token recognises the claim."""
    return f"{new_owner().rsplit(':', 1)[0]}:{token}"


class FinalRecordNotSavedError(ExecutionError):
    """The run ended but its final record could not be written (the store shows it running, or not at all).

    Attributes:
        run_id: the run.  status: the status the record would have had.
        errno: the ``errno`` of the underlying OSError (e.g. ENOSPC), or None.
        filename: the file that could not be written, or ``""``.
    """

    def __init__(
        self, message: str, run_id: str = "", status: str = "", errno: int | None = None,
        filename: str = "",
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.errno = errno
        self.filename = filename

    def __reduce__(self) -> tuple[object, ...]:  # keeps the attributes across processes
        return (type(self), (str(self), self.run_id, self.status, self.errno, self.filename))


#: provenances kept by :func:`_provenance` (one per operation and worker thread or process)
_PROVENANCE_CACHE_SIZE = 256
#: links of an exception's cause/context chain searched for the OSError behind it
_MAX_CAUSE_DEPTH = 10


def _os_error_of(exc: BaseException) -> OSError | None:
    """The first OSError in ``exc``'s cause/context chain (itself included)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < _MAX_CAUSE_DEPTH:
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def is_interrupt(record: RunRecord | None) -> bool:
    """True if ``record`` ended because of Ctrl-C or SIGTERM (KeyboardInterrupt, SystemExit)."""
    return bool(
        record is not None
        and record.status is Status.CANCELLED
        and record.error is not None
        and record.error.type in ("KeyboardInterrupt", "SystemExit")
    )


def _cancelled_error(exc: BaseException) -> ErrorInfo:
    info = ErrorInfo.from_exception(exc)
    if isinstance(exc, SystemExit) and not info.message:
        info = ErrorInfo(info.type, "the worker was asked to exit (SIGTERM or sys.exit)", info.traceback)
    if isinstance(exc, KeyboardInterrupt) and not info.message:
        info = ErrorInfo(info.type, "interrupted (Ctrl-C)", info.traceback)
    return info


def _merge_returned(
    returned: Any, metrics: dict[str, Any], warnings: list[str]
) -> None:
    if returned is None:
        return
    if isinstance(returned, dict):
        if all(isinstance(k, str) and is_scalar(v) for k, v in returned.items()):
            for k, v in returned.items():
                metrics[k] = to_scalar(k, v)
        else:
            warnings.append(
                "the operation returned a dict whose values are not all scalars; it was "
                "ignored (use capture.data() for nested values)"
            )
        return
    warnings.append(
        f"the operation returned a {type(returned).__name__}, which was ignored "
        "(return a dict of scalars or use capture.metric())"
    )


def _compute_derived(store: Store, record: RunRecord, fns: DerivedSpec) -> None:
    """Compute derived metrics of a successful run; failures only warn."""
    try:
        from metalab.analysis._derived import compute_derived_for_run
        from metalab.analysis._run import Run

        run = Run.from_store(store, record.run_id)
        values = compute_derived_for_run(run, list(fns))
        if values:
            store.put_derived(record.run_id, encode_values(values))  # (inf, NaN: as texts)
    except Exception as exc:
        log.warning("derived metrics of run %s could not be computed: %s", record.run_id, exc)


def execute_run(
    spec: Any,
    op: Any,
    context: Any,
    store: Store,
    *,
    executor: str = "serial",
    worker_id: str = "",
    attempt: int = 1,
    metadata: dict[str, Any] | None = None,
    cancel_flag: CancelFlag | None = None,
    on_started: StartedCallback | None = None,
    derived_metrics: DerivedSpec = (),
    claim: bool = True,
    skip_if_succeeded: bool = False,
    running_record_after: float = RUNNING_RECORD_AFTER_S,
) -> RunRecord:
    """Run ``op`` for ``spec`` and return the final record (already stored).

    The arguments are the fields of a :class:`Job` (``op`` is its
    ``operation``, ``skip_if_succeeded`` its ``resume``); this builds one and
    runs it with :func:`run_job`, which documents what happens and what is
    raised.
    """
    job = Job(
        spec=spec, operation=op, context=context, store=store, attempt=attempt,
        metadata=dict(metadata or {}), derived_metrics=tuple(derived_metrics),
        cancel_flag=cancel_flag, on_started=on_started, resume=skip_if_succeeded,
        claim=claim, running_record_after=running_record_after,
    )
    return run_job(job, executor, worker_id)


def run_job(job: Job, executor: str, worker_id: str, owner: str | None = None) -> RunRecord:
    """Execute ``job`` in this thread and return its final record (already stored).

    ``executor`` and ``worker_id`` name where it runs (run record provenance);
    ``owner`` is the claim owner (default: a new one, :func:`new_owner`).

    With ``job.resume`` a run found ``success`` once claimed is not executed
    again (CompletedElsewhereError).  With ``job.claim`` (the default) the run
    is first claimed in the store (:meth:`Store.try_claim`; a stale claim is
    taken over after :func:`~metalab.query.lost_after_seconds`), and a
    heartbeat refreshes the claim and the ``running`` record's
    ``heartbeat_at`` every :func:`~metalab.query.heartbeat_interval`
    seconds until the final record is written; the claim is released
    afterwards.  Right after the claim, ``job.start_check`` (default:
    ``job.cancel_flag``) is looked at once; if it is set, the claim is
    released and nothing is written (NotStartedError).

    Writes a ``running`` record (at once for ``attempt > 1``, which replaces
    the earlier attempt's record; else at the first heartbeat, after
    ``job.running_record_after`` seconds: launchers that learn of a run's
    start only from the store, like the SLURM handle, pass 0), calls the
    operation with the arguments it declares (``context``, ``params``,
    ``seeds``, ``runtime``, ``capture``), then writes one final record.
    With ``job.committer`` the final record is staged instead (see
    :mod:`metalab.execution._commit`): the claim is kept, and the record is
    durable and in place only once the committer has committed it.
    Exceptions of the operation never escape: they become a ``failed`` record
    (``cancelled`` for KeyboardInterrupt, SystemExit and
    :class:`~metalab.RunCancelledError`).  Thread-safe for distinct runs.

    Raises:
        NotStartedError: the submission was cancelled before the run began
            (nothing was written; the operation is not called).
        ClaimedElsewhereError: another launch holds a live claim on the run
            (nothing was written; the operation is not called).
            :class:`CompletedElsewhereError` (a subclass): another launch
            completed the run meanwhile (``job.resume``).
        StoreError / OSError: the claim (or, for ``attempt > 1``, the
            initial ``running`` record) cannot be written, or with
            ``job.resume`` the run's record cannot be read for a reason other
            than a damaged file (the operation is then not called).
        FinalRecordNotSavedError: the run ended but its final record could
            not be written (the store shows it as running, as its earlier
            attempt's record, or not at all).
    """
    store = job.store
    run_id = job.run_id
    owner = owner or new_owner()
    if job.claim:
        _claim(store, run_id, owner, skip_if_succeeded=job.resume)
    try:
        _check_start(job)
        return _execute_claimed(job, owner, executor, worker_id)
    finally:
        committer = _committer_of(job)
        # a staged final record keeps its claim until the committer renamed it into place
        if job.claim and not (committer is not None and committer.holds(run_id)):
            release_quietly(store, run_id, owner)


def _check_start(job: Job) -> None:
    """The last look at the cancel signal before anything is written: once the run is
    claimed, a launcher that sees no claim knows the run will not execute (NotStartedError)."""
    flag = job.start_check if job.start_check is not None else job.cancel_flag
    if flag is not None and flag.is_set():
        raise NotStartedError(f"run {job.run_id} was cancelled before it started")


def _committer_of(job: Job) -> Any:
    """The group committer of ``job``'s final record, or None to write it at once
    (derived metrics read the stored record right after it is written)."""
    return job.committer if not job.derived_metrics else None


def _claim(store: Store, run_id: str, owner: str, *, skip_if_succeeded: bool) -> None:
    """Claim ``run_id`` for ``owner``; see :func:`run_job` for what it raises."""
    from metalab.query import lost_after_seconds

    if not store.try_claim(run_id, owner, lost_after_seconds()):
        try:
            held = store.claim_holder(run_id)
        except Exception as exc:  # the holder only names the other launch in the message
            log.debug("run %s: could not read who holds its claim: %s", run_id, exc)
            held = None
        holder = held[0] if held else ""
        who = f"claimed by {owner_label(holder)}" if holder else "live claim"
        raise ClaimedElsewhereError(
            f"run {run_id} is being executed by another launch right now ({who}); "
            "it was not started here",
            run_id,
            holder,
        )
    if skip_if_succeeded:
        # another launch may have finished it between our last read and the claim
        try:
            done = store.get_run_record(run_id)
        except CorruptRecordError:
            done = None  # unreadable (readers skip it): executing again replaces it
        except BaseException:
            # unknown (I/O error, database down): executing could repeat a finished run
            release_quietly(store, run_id, owner)
            raise
        if done is not None and done.status is Status.SUCCESS:
            store.release_claim(run_id, owner)
            raise CompletedElsewhereError(
                f"run {run_id} was completed by another launch meanwhile", run_id
            )


def release_quietly(store: Store, run_id: str, owner: str) -> None:
    """Release a claim; a failure is logged, never raised (the run's outcome, or the error
    being raised, is what to report)."""
    try:
        store.release_claim(run_id, owner)
    except Exception as exc:
        log.warning("could not release the claim of run %s: %s", run_id, exc)


def _execute_claimed(job: Job, owner: str, executor: str, worker_id: str) -> RunRecord:
    """The part of :func:`run_job` after the claim: records, log, heartbeat, the call."""
    store = job.store
    spec = job.spec
    run_id = job.run_id
    attempt = job.attempt
    started_at = utcnow()
    t0 = time.perf_counter()
    running = _running_record(spec, job.operation, executor, worker_id, attempt, started_at)
    if job.code_provenance:
        running = running.replace(provenance=dataclasses.replace(
            running.provenance, **job.code_provenance))
    running_written_at_once = attempt > 1 or job.running_record_after <= 0
    if running_written_at_once:
        # an earlier attempt's record is there: replace it now, or readers would show
        # its status while this attempt runs (no fsync: re-created if lost)
        store.put_run_record(running, durable=False)
    # the log before the heartbeat: if it cannot be opened, no heartbeat is left
    # writing a running record for a run that never ran
    run_log = RunLog(
        store, run_id, "run",
        header=f"{to_iso(started_at)} === attempt {attempt} started "
        f"(run {run_id}, worker {worker_id or '-'}, executor {executor}) ===",
    )
    runtime = Runtime(run_id, spec.experiment_id, worker_id, job.metadata, job.cancel_flag)
    capture = Capture(store, run_id, run_log, experiment_id=spec.experiment_id, attempt=attempt)
    # a first attempt's running record is the first heartbeat's (running_record_after):
    # a short run writes one record instead of two; its claim says meanwhile that it runs
    heartbeat = Heartbeat(
        store, running, owner, heartbeat_interval(), first_in=job.running_record_after
    ).start()
    if job.on_started is not None:
        try:
            job.on_started(run_id, worker_id, started_at)
        except Exception:
            log.exception("run %s: start notification failed (ignored)", run_id)
    try:
        std = route_std(store, run_id) if job.capture_std else contextlib.nullcontext()
        with route_logging(run_log), std:
            status, error, returned = _call_operation(job.operation, spec, job.context, runtime, capture)
        heartbeat.stop()
        final = _final_record(running, capture, status, error, returned, t0)
        _end_log(run_log, final, attempt)
        _put_final_record(
            store, final, running_shown=running_written_at_once or heartbeat.wrote_record,
            committer=_committer_of(job), owner=owner if job.claim else None,
        )
        if final.status is Status.SUCCESS and job.derived_metrics:
            _compute_derived(store, final, job.derived_metrics)
        return final
    finally:
        heartbeat.stop()
        runtime._cleanup()
        run_log.close()


@functools.lru_cache(maxsize=_PROVENANCE_CACHE_SIZE)
def _provenance(code_hash: str, ref: str, executor: str, worker_id: str, pid: int) -> Provenance:
    """The provenance of runs of one operation on one worker of this process (made once).

    ``pid`` is part of the key so a child made by ``fork`` makes its own.
    """
    return Provenance.current(
        code_hash=code_hash, operation_ref=ref, executor=executor, worker_id=worker_id
    )


def _running_record(
    spec: Any, op: Any, executor: str, worker_id: str, attempt: int, started_at: datetime
) -> RunRecord:
    """The ``running`` record of this attempt of ``spec``'s run."""
    provenance = _provenance(
        getattr(op, "code_hash", "") or "", getattr(op, "ref", "") or "", executor, worker_id,
        os.getpid(),
    )
    seed = spec.seed.to_dict() if hasattr(spec.seed, "to_dict") else dict(spec.seed)
    return RunRecord(
        run_id=spec.run_id,
        experiment_id=spec.experiment_id,
        status=Status.RUNNING,
        context_fingerprint=spec.context_fingerprint,
        params_fingerprint=spec.params_fingerprint,
        seed_fingerprint=spec.seed_fingerprint,
        params=dict(spec.params),
        seed=seed,
        tags=tuple(spec.tags),
        started_at=started_at,
        heartbeat_at=started_at,
        provenance=provenance,
        attempt=attempt,
    )


def _call_operation(
    op: Any, spec: Any, context: Any, runtime: Runtime, capture: Capture
) -> tuple[Status, ErrorInfo | None, Any]:
    """Call the operation; ``(status, error, returned value)``.  Its exceptions
    never escape: they become ``failed`` (``cancelled`` for interrupts and
    RunCancelledError)."""
    try:
        returned = op(
            context=context,
            params=dict(spec.params),
            seeds=spec.seed,
            runtime=runtime,
            capture=capture,
        )
    except RunCancelledError as exc:
        return Status.CANCELLED, ErrorInfo.from_exception(exc), None
    except (KeyboardInterrupt, SystemExit) as exc:
        return Status.CANCELLED, _cancelled_error(exc), None
    except Exception as exc:
        log.debug("run %s failed: %s", spec.run_id, exc)
        return Status.FAILED, ErrorInfo.from_exception(exc), None
    return Status.SUCCESS, None, returned


def _final_record(
    running: RunRecord,
    capture: Capture,
    status: Status,
    error: ErrorInfo | None,
    returned: Any,
    t0: float,
) -> RunRecord:
    """The final record: what the run captured (and, on success, returned)."""
    metrics, data, series, artifacts, warnings = capture._finish()
    if status is Status.SUCCESS:
        try:
            _merge_returned(returned, metrics, warnings)
        except Exception as exc:  # a bad returned metric fails the run
            status, error = Status.FAILED, ErrorInfo.from_exception(exc)
    finished_at = utcnow()
    return running.replace(
        status=status,
        finished_at=finished_at,
        heartbeat_at=finished_at,
        duration_ms=(time.perf_counter() - t0) * 1000.0,
        metrics=metrics,
        data=data,
        series=series,
        artifacts=artifacts,
        error=error,
        warnings=tuple(warnings),
    )


def _end_log(run_log: RunLog, final: RunRecord, attempt: int) -> None:
    """Write the "attempt N ended" line of the run's log."""
    try:
        run_log.end(
            f"{to_iso(final.finished_at)} === attempt {attempt} ended: {final.status.value} "
            f"after {final.duration_ms:.0f} ms ==="
        )
    except Exception as exc:
        # the line is only a marker for readers of the log; the final record must
        # still be written (and reports a broken store if that is the cause)
        log.debug("run %s: could not write the end of its log: %s", final.run_id, exc)


def _put_final_record(
    store: Store, final: RunRecord, *, running_shown: bool, committer: Any = None,
    owner: str | None = None,
) -> None:
    """Store ``final`` (or stage it with ``committer``, keeping the claim of ``owner``);
    FinalRecordNotSavedError if it cannot be written.

    ``running_shown``: whether the store already holds this attempt's ``running`` record.
    """
    try:
        if committer is not None:
            committer.stage(final, owner, running_shown)
        else:
            store.put_run_record(final)
    except Exception as exc:
        raise final_not_saved(final, exc, running_shown) from exc


def final_not_saved(final: RunRecord, exc: BaseException, running_shown: bool) -> FinalRecordNotSavedError:
    """The error of a run whose final record ``final`` could not be written because of ``exc``."""
    log.debug("run %s: the final record could not be written", final.run_id, exc_info=exc)
    cause = _os_error_of(exc)
    shows = (
        "the store still shows it as running"
        if running_shown
        else "the store holds no record of it"
    )
    err = FinalRecordNotSavedError(
        f"run {final.run_id} ended {final.status.value}, but its final record could NOT be written "
        f"({type(exc).__name__}: {exc}); {shows}. Fix the "
        "store and run again with resume=True",
        final.run_id,
        final.status.value,
        cause.errno if cause is not None else None,
        str(cause.filename or "") if cause is not None else "",
    )
    err.__cause__ = exc
    return err


# --------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One pending run, as handed to an :class:`~metalab.execution.Executor`.

    In-process executors call :meth:`run`; out-of-process executors ship
    :meth:`to_payload` (picklable) and run :func:`process_entry` remotely,
    which rebuilds the job there.
    """

    spec: Any
    operation: Any
    context: Any
    store: Store
    attempt: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    derived_metrics: tuple[Any, ...] = ()
    #: set when the submission is cancelled (a ``threading.Event`` or a multiprocessing one)
    cancel_flag: CancelFlag | None = None
    #: looked at once, right after the claim, instead of ``cancel_flag`` (set: the run is
    #: not started); for a signal too costly to hand to the operation (one look per run)
    start_check: CancelFlag | None = None
    on_started: StartedCallback | None = None
    context_blob: Callable[[], bytes] | None = None
    #: resume semantics: do not re-execute a run another launch completed meanwhile
    resume: bool = False
    #: claim the run in the store before executing it
    claim: bool = True
    #: seconds after the start at which a first attempt writes its ``running`` record
    running_record_after: float = RUNNING_RECORD_AFTER_S
    #: ``{"git": ..., "packages": ...}`` of the launch for the run's provenance
    #: (:func:`~metalab.execution._provenance.code_provenance`; None: not recorded)
    code_provenance: dict[str, Any] | None = None
    #: capture ``sys.stdout`` / ``sys.stderr`` writes in the run's logs (tee'd; see
    #: ``_stdio``); False where file descriptors 1 and 2 already go there
    capture_std: bool = True
    #: stages the final record and commits it later with others
    #: (:class:`~metalab.execution._commit.GroupCommitter`; in process only, not shipped)
    committer: Any = None

    @property
    def run_id(self) -> str:
        return str(self.spec.run_id)

    def run(self, executor: str, worker_id: str, owner: str | None = None) -> RunRecord:
        """Execute in this thread (see :func:`run_job`).

        Raises:
            NotStartedError: the submission was cancelled before the run began.
            Otherwise what :func:`run_job` raises.
        """
        if self.cancel_flag is not None and self.cancel_flag.is_set():
            raise NotStartedError(f"run {self.run_id} was cancelled before it started")
        return run_job(self, executor, worker_id, owner)

    def to_payload(self, executor: str) -> RunPayload:
        """A picklable description of this job for another process."""
        blob = self.context_blob() if self.context_blob else pickle.dumps(self.context)
        return RunPayload(
            store_config=self.store.config.to_dict(),
            operation_ref=str(self.operation.ref),
            context_blob=blob,
            spec=self.spec,
            attempt=self.attempt,
            metadata=dict(self.metadata),
            derived_metrics=tuple(self.derived_metrics),
            executor=executor,
            resume=self.resume,
            code_provenance=self.code_provenance,
        )


@dataclass(frozen=True)
class RunPayload:
    """Everything a worker process needs to run one run (picklable)."""

    store_config: dict[str, Any]
    operation_ref: str
    context_blob: bytes
    spec: Any
    attempt: int
    metadata: dict[str, Any]
    derived_metrics: tuple[Any, ...]
    executor: str = "process"
    resume: bool = False
    code_provenance: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.spec.run_id)


# ------------------------------------------------------- worker-process side
class _WorkerState:
    started_queue: Any = None
    cancel_event: Any = None
    stores: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    contexts: dict[str, Any] = {}


def sigterm_exit(signum: int, frame: Any) -> None:
    """The SIGTERM handler of every place that runs operations: ``SystemExit`` with
    :data:`EXIT_SIGTERM`, so ``finally`` blocks run and the run's record says so."""
    raise SystemExit(EXIT_SIGTERM)


def process_initializer(started_queue: Any, cancel_event: Any) -> None:
    """Initializer of worker processes: remember the queues, turn SIGTERM into SystemExit."""
    _WorkerState.started_queue = started_queue
    _WorkerState.cancel_event = cancel_event
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, sigterm_exit)
    # Ctrl-C goes to the whole process group; let the parent decide what to cancel
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _redirect_std(store: Store, run_id: str) -> Iterator[None]:
    """Point fd 1 and 2 to the run's ``stdout`` / ``stderr`` logs, restore afterwards."""
    import tempfile

    saved: list[tuple[int, int]] = []
    temps: list[tuple[str, str]] = []
    for fd, name, stream in ((1, "stdout", sys.stdout), (2, "stderr", sys.stderr)):
        with contextlib.suppress(Exception):  # a closed or replaced stream: nothing to keep
            stream.flush()
        if store.supports_log_path:
            path = store.log_path(run_id, name)
        else:
            tmp = tempfile.NamedTemporaryFile(prefix=f"metalab-{name}-", delete=False)  # noqa: SIM115
            tmp.close()
            path = tmp.name
            temps.append((name, path))
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        saved.append((fd, os.dup(fd)))
        os.dup2(target, fd)
        os.close(target)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # as above: the fds are restored regardless
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        for name, path in temps:
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                if text:
                    store.append_log(run_id, name, text)
            except Exception as exc:
                log.warning("run %s: could not store captured %s: %s", run_id, name, exc)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _worker_resources(payload: RunPayload) -> tuple[Any, Any, Any]:
    from metalab._internal import _json
    from metalab.definition import load_operation
    from metalab.store import StoreConfig

    cfg_key = _json.dumps(payload.store_config).decode()
    store = _WorkerState.stores.get(cfg_key)
    if store is None:
        store = StoreConfig.from_dict(payload.store_config).connect()
        _WorkerState.stores[cfg_key] = store
    op = _WorkerState.ops.get(payload.operation_ref)
    if op is None:
        op = load_operation(payload.operation_ref)
        _WorkerState.ops[payload.operation_ref] = op
    ctx_key = hashlib.sha256(payload.context_blob).hexdigest()
    if ctx_key in _WorkerState.contexts:
        context = _WorkerState.contexts[ctx_key]
    else:
        context = pickle.loads(payload.context_blob)
        _WorkerState.contexts = {ctx_key: context}  # keep only the latest context
    return store, op, context


def process_entry(
    payload: RunPayload, redirect: bool = True, *, start_check: CancelFlag | None = None,
    owner: str | None = None,
) -> RunRecord:
    """Run one payload inside a worker process (the process executor's target).

    With ``redirect`` (one run at a time per process) file descriptors 1 and
    2 go to the run's ``stdout``/``stderr`` logs; multi-threaded workers
    (Dask) pass False.  ``start_check`` and ``owner``: see :attr:`Job.start_check`
    and :func:`run_job`.

    Raises:
        NotStartedError: the submission was cancelled before this run began.
        OperationImportError: the worker cannot import the operation.
        ClaimedElsewhereError: another launch is executing this run (or
            completed it: CompletedElsewhereError).
        FinalRecordNotSavedError: see :func:`run_job`.
    """
    cancel = _WorkerState.cancel_event
    if cancel is not None and cancel.is_set():
        raise NotStartedError(f"run {payload.run_id} was cancelled before it started")
    store, op, context = _worker_resources(payload)
    worker_id = f"process-{os.getpid()}"

    def started(run_id: str, wid: str, at: datetime) -> None:
        q = _WorkerState.started_queue
        if q is not None:
            q.put((run_id, wid, at))

    job = Job(
        spec=payload.spec, operation=op, context=context, store=store, attempt=payload.attempt,
        metadata=payload.metadata, derived_metrics=payload.derived_metrics, cancel_flag=cancel,
        on_started=started, resume=payload.resume, code_provenance=payload.code_provenance,
        capture_std=not redirect, start_check=start_check,
    )
    with _redirect_std(store, payload.run_id) if redirect else contextlib.nullcontext():
        return run_job(job, payload.executor, worker_id, owner)
