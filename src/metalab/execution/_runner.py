"""``run()``: submit an experiment to an executor and get a handle back."""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from metalab._errors import ExecutionError, OperationImportError, ValidationError
from metalab._internal._time import to_iso, utcnow
from metalab.execution._batch import Batch
from metalab.execution._context_check import warn_context_change
from metalab.execution._events import EventCallback
from metalab.execution._executors import Executor, SerialExecutor
from metalab.execution._handle import Handle
from metalab.execution._provenance import code_provenance
from metalab.model import Status

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
    progress: bool | None = None,
    on_event: EventCallback | None = None,
    derived_metrics: Sequence[Callable[..., Any] | str] | None = None,
) -> Handle:
    """Run every run of ``experiment`` and return its :class:`Handle`.

    The handle is a :class:`RunHandle` for the serial, thread, process and
    Dask executors and a :class:`SlurmRunHandle` for SLURM: whatever the
    executor's :meth:`Executor.submit_batch` returns.

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
        progress: ``None``: a progress bar on a terminal, else lines on the
            ``metalab.progress`` logger; both report failed runs as they
            happen (see :func:`~metalab.execution._progress.progress_reporter`).
            ``True``: the bar always; ``False``: nothing.
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
    _warn_without_claims(scoped)
    submitted_at = utcnow()
    manifest = _submission_manifest(experiment, specs, executor, resume, submitted_at)
    pending, skipped = _split_resumed(specs, previous, resume)

    return executor.submit_batch(Batch(
        experiment=experiment, store=scoped, specs=specs, pending=pending, skipped=skipped,
        manifest=manifest, submitted_at=submitted_at, derived_metrics=derived,
        context_blob=context_blob, resume=resume, progress=progress, on_event=on_event,
        code_provenance=code_provenance(experiment.operation),
    ))


@functools.cache
def _warn_without_claims_once(store_type: str) -> None:
    log.warning(
        "%s cannot claim runs (supports_claims is False): two launches of one experiment "
        "at the same time may execute a run twice; launch each experiment once at a time, "
        "or use a store that supports claims (FileStore, PostgresStore)", store_type
    )


def _warn_without_claims(store: Any) -> None:
    """Say (once per store type and process) that ``store`` cannot keep launches apart."""
    if not store.supports_claims:
        _warn_without_claims_once(type(store).__name__)


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
