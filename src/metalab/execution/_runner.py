"""``run()``: submit an experiment to an executor and get a handle back."""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError, OperationImportError, ValidationError
from metalab._internal._time import to_iso, utcnow
from metalab.execution._context_check import warn_context_change
from metalab.execution._events import EventCallback, EventDispatcher
from metalab.execution._executors import Executor, SerialExecutor
from metalab.execution._handle import RunHandle
from metalab.execution._worker import EXIT_SIGTERM, Job, is_interrupt
from metalab.model import Status

if TYPE_CHECKING:
    from metalab.execution._slurm import SlurmRunHandle

__all__ = ["run"]

log = logging.getLogger("metalab.execution")


def _check_derived(derived_metrics: Any) -> tuple[Any, ...]:
    if derived_metrics is None:
        return ()
    items = [derived_metrics] if isinstance(derived_metrics, str) or callable(derived_metrics) else list(derived_metrics)
    from metalab.analysis._derived import resolve_derived

    for item in items:
        resolve_derived(item)  # fail fast on bad references
    return tuple(items)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """In the main thread, turn SIGTERM into SystemExit while runs execute here."""
    installed = False
    old: Any = None
    if threading.current_thread() is threading.main_thread():
        try:
            old = signal.getsignal(signal.SIGTERM)
            if old in (signal.SIG_DFL, None):

                def _raise(signum: int, frame: Any) -> None:
                    raise SystemExit(EXIT_SIGTERM)

                signal.signal(signal.SIGTERM, _raise)
                installed = True
        except (ValueError, OSError, AttributeError):
            installed = False
    try:
        yield
    finally:
        if installed:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, old)


def _warn_code_change(store: Any, experiment: Any) -> None:
    try:
        previous = store.get_experiment_manifest(experiment.experiment_id)
    except Exception as exc:
        log.warning("could not read the previous manifest of %s: %s", experiment.experiment_id, exc)
        return
    if not previous:
        return
    op_info = previous.get("operation") or {}
    old = op_info.get("code_hash") if isinstance(op_info, dict) else None
    new = getattr(experiment.operation, "code_hash", "")
    if old and new and old != new:
        log.warning(
            "the code of operation %s changed since the last submission of %s "
            "(code hash %s -> %s). Run ids do not depend on the code, so runs that already "
            "succeeded are skipped; pass resume=False (or a new experiment version) to rerun them",
            getattr(experiment.operation, "ref", "?"),
            experiment.experiment_id,
            old,
            new,
        )


def run(
    experiment: Any,
    store: Any = None,
    executor: Executor | None = None,
    *,
    resume: bool = True,
    progress: bool = False,
    on_event: EventCallback | None = None,
    derived_metrics: Sequence[Callable[..., Any] | str] | None = None,
) -> RunHandle | SlurmRunHandle:
    """Run every run of ``experiment`` and return a :class:`RunHandle`.

    Args:
        experiment: a :class:`~metalab.Experiment`.
        store: ``None`` (the folder ``"./experiments"``), a path or locator, a
            ``StoreConfig`` or a ``Store`` (see :func:`metalab.store.make_store`);
            always scoped to the experiment.
        executor: where runs execute; default :class:`SerialExecutor` (in this
            thread: every run has ended when ``run`` returns, including runs
            another live launch was executing, which are waited for).  With
            :class:`SlurmExecutor` the runs are queued as job arrays and a
            :class:`SlurmRunHandle` is returned at once.
        resume: skip runs whose stored record is ``success``; rerun the rest.
        progress: show a rich progress bar.
        on_event: called with each :class:`Event`, one at a time, in
            completion order; exceptions it raises are logged and ignored.
        derived_metrics: callables or ``"module:function"`` strings computed on
            each successful run and stored as its derived metrics (failures
            only warn).

    The experiment manifest (with all run ids) is stored once per call.  The
    executor is shut down when every run has ended.  A run claimed by another
    live launch is neither executed nor counted as skipped: the handle waits
    for its final record (``RunStatus.elsewhere``), and executes it here if
    that launch dies; a claim whose owner is certainly dead (this host: pid
    gone) is taken over at once, so a resume right after ``kill -9`` runs
    everything.  When the submission has ended, failures are reported once on
    the ``metalab.execution`` logger (count and first error line; an ERROR
    naming the folder when the disk is full).

    Raises:
        ConfigError / ScopeError: bad store.  ValidationError: bad arguments
        or derived metric references.  OperationImportError: a process
        executor cannot ship the operation (lambda or local function).
        KeyboardInterrupt / SystemExit: Ctrl-C or SIGTERM while runs execute
        in this thread (the submission is cancelled first; the interrupted
        run is recorded as ``cancelled``, queued runs never start).
    """
    _check_arguments(experiment, executor)
    executor = SerialExecutor() if executor is None else executor
    derived = _check_derived(derived_metrics)
    experiment_id: str = experiment.experiment_id
    context_blob = _shippable_context(experiment, executor)

    from metalab.store import make_store

    scoped = make_store(store, experiment_id=experiment_id)
    experiment.context_fingerprint  # noqa: B018 - resolve (and validate) the context once
    specs = list(experiment.iter_specs())
    previous = _previous_runs(scoped)
    _warn_code_change(scoped, experiment)
    warn_context_change(scoped, experiment)
    submitted_at = utcnow()
    manifest = _submission_manifest(experiment, specs, executor, resume, submitted_at)
    pending, skipped = _split_resumed(specs, previous, resume)

    submit_experiment = getattr(executor, "submit_experiment", None)
    if submit_experiment is not None:
        # batch executors (SLURM) write the manifest and queue everything themselves
        return submit_experiment(
            experiment, scoped, pending=pending, skipped=skipped, manifest=manifest,
            progress=progress, on_event=on_event, derived_metrics=derived,
        )
    scoped.put_experiment_manifest(experiment_id, manifest, timestamp=submitted_at)
    return _run_here(
        experiment, scoped, executor, specs, pending, skipped,
        derived=derived, context_blob=context_blob, resume=resume, progress=progress,
        on_event=on_event,
    )


def _run_here(
    experiment: Any,
    scoped: Any,
    executor: Executor,
    specs: list[Any],
    pending: list[tuple[Any, int]],
    skipped: list[str],
    *,
    derived: tuple[Any, ...],
    context_blob: Callable[[], bytes] | None,
    resume: bool,
    progress: bool,
    on_event: EventCallback | None,
) -> RunHandle:
    """Submit the runs to an executor of single runs; see :func:`run` for the waiting."""
    experiment_id: str = experiment.experiment_id
    handle = _new_handle(scoped, experiment_id, specs, executor, progress, on_event)
    for run_id in skipped:
        handle._skip(run_id, "already succeeded (resume=True)")
    interrupt = _submit_pending(
        handle, experiment, scoped, executor, pending, derived, context_blob, resume
    )
    if interrupt is not None:
        # the interrupt hit a run executing in this thread: stop the caller too
        handle.wait()
        if interrupt == "SystemExit":
            raise SystemExit(EXIT_SIGTERM)
        raise KeyboardInterrupt
    if isinstance(executor, SerialExecutor) and not handle.done:
        # runs another launch is executing: a serial run() returns when every run has ended
        try:
            with _sigterm_as_exit():
                handle.wait()
        except BaseException:  # Ctrl-C (wait() cancels) or SIGTERM: stop waiting for them
            handle.cancel()
            raise
    return handle


def _check_arguments(experiment: Any, executor: Any) -> None:
    """ValidationError unless ``experiment`` looks like an Experiment and ``executor`` is None or an Executor."""
    for attr in ("experiment_id", "iter_specs", "manifest", "operation"):
        if not hasattr(experiment, attr):
            raise ValidationError(
                f"run() needs a metalab.Experiment, got {type(experiment).__name__} "
                f"(missing {attr!r})"
            )
    if executor is not None and not isinstance(executor, Executor):
        raise ValidationError(
            f"executor must be a metalab Executor (SerialExecutor, ThreadExecutor, "
            f"ProcessExecutor, DaskExecutor, SlurmExecutor), got {type(executor).__name__}"
        )


def _shippable_context(experiment: Any, executor: Executor) -> Callable[[], bytes] | None:
    """For an out-of-process executor: check the operation and context can be
    shipped, and return the pickled context (pickled once, for every job).
    ``None`` for in-process executors."""
    if getattr(executor, "in_process", True):
        return None
    op = experiment.operation
    pickle.dumps(op)  # raises OperationImportError for lambdas / local functions
    try:
        blob = pickle.dumps(experiment.context)
    except Exception as exc:
        raise ExecutionError(
            f"the context of {experiment.experiment_id!r} cannot be pickled for {executor.name} "
            f"workers ({type(exc).__name__}: {exc}); use plain data, dataclasses or "
            "FilePath markers in the context"
        ) from exc
    if not getattr(op, "ref", ""):
        raise OperationImportError(f"operation {op!r} has no importable reference")
    return functools.partial(bytes, blob)


def _previous_runs(scoped: Any) -> dict[str, tuple[str, int]]:
    """Status and attempt of every stored run, in one bulk pass over the records."""
    previous: dict[str, tuple[str, int]] = {}
    for doc in scoped.iter_run_documents():
        rid = doc.get("run_id")
        if isinstance(rid, str):
            try:
                attempt = int(doc.get("attempt", 1) or 0)
            except (TypeError, ValueError):
                attempt = 1
            previous[rid] = (str(doc.get("status", "")), attempt)
    return previous


def _submission_manifest(
    experiment: Any, specs: list[Any], executor: Executor, resume: bool, submitted_at: Any
) -> dict[str, Any]:
    manifest: dict[str, Any] = experiment.manifest(run_ids=[s.run_id for s in specs])
    manifest["submitted_at"] = to_iso(submitted_at)
    manifest["executor"] = executor.name
    manifest["resume"] = bool(resume)
    return manifest


def _split_resumed(
    specs: list[Any], previous: dict[str, tuple[str, int]], resume: bool
) -> tuple[list[tuple[Any, int]], list[str]]:
    """``(pending, skipped)``: ``(spec, previous attempt)`` of the runs to execute,
    and the ids of the runs ``resume`` skips because they already succeeded."""
    pending: list[tuple[Any, int]] = []
    skipped: list[str] = []
    for spec in specs:
        status, attempt = previous.get(spec.run_id, ("", 0))
        if resume and status == Status.SUCCESS.value:
            skipped.append(spec.run_id)
        else:
            pending.append((spec, attempt))
    return pending, skipped


def _new_handle(
    scoped: Any,
    experiment_id: str,
    specs: list[Any],
    executor: Executor,
    progress: bool,
    on_event: EventCallback | None,
) -> RunHandle:
    """The handle of an in-process submission, with its progress bar and event callback."""
    dispatcher = EventDispatcher()
    finish_hooks: list[Any] = []
    if progress:
        from metalab.execution._progress import ProgressDisplay

        display = ProgressDisplay(experiment_id, len(specs))
        dispatcher.add(display)
        finish_hooks.append(display.stop)
    if on_event is not None:
        dispatcher.add(on_event)
    return RunHandle(
        scoped,
        experiment_id,
        total=len(specs),
        executor=executor,
        dispatcher=dispatcher,
        cancel_flag=threading.Event(),
        on_finish=finish_hooks,
        run_ids=[spec.run_id for spec in specs],
    )


def _submit_pending(
    handle: RunHandle,
    experiment: Any,
    scoped: Any,
    executor: Executor,
    pending: list[tuple[Any, int]],
    derived: tuple[Any, ...],
    context_blob: Callable[[], bytes] | None,
    resume: bool,
) -> str | None:
    """Hand every pending run to ``executor`` until the submission is cancelled.

    Returns the type of interrupt (``"KeyboardInterrupt"`` or ``"SystemExit"``)
    that hit a run executing in this thread, else None.  Any other exception
    cancels the submission and propagates.
    """
    cancel_flag = handle._cancel_flag
    metadata = dict(getattr(experiment, "metadata", None) or {})
    interrupt: str | None = None
    try:
        with _sigterm_as_exit():
            for spec, attempt in pending:
                if cancel_flag.is_set():
                    break
                job = Job(
                    spec=spec,
                    operation=experiment.operation,
                    context=experiment.context,
                    store=scoped,
                    attempt=attempt + 1,
                    metadata=metadata,
                    derived_metrics=derived,
                    cancel_flag=cancel_flag,
                    on_started=handle._started,
                    context_blob=context_blob,
                    resume=resume,
                )
                fut = executor.submit(job)
                handle._track(spec.run_id, fut, job)
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    record = fut.result()
                    if is_interrupt(record):
                        interrupt = record.error.type
    except KeyboardInterrupt:
        interrupt = interrupt or "KeyboardInterrupt"  # a SIGTERM seen first still wins
        handle.cancel()
    except BaseException:
        handle.cancel()
        _close_submission(handle, pending)
        raise
    _close_submission(handle, pending)
    return interrupt


def _close_submission(handle: RunHandle, pending: list[Any]) -> None:
    """Account for runs never handed to the executor, then let the handle finish."""
    tracked = handle._futures
    for spec, _ in pending:
        if spec.run_id not in tracked:
            handle._not_submitted(spec.run_id)
    handle._submission_complete()
