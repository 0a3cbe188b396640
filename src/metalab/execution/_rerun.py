"""Executing one stored run again under the same run id (``metalab runs rerun``).

The run is rebuilt from what the store holds: the operation is imported by the
reference its experiment's manifest records, and the parameters, seed, tags
and fingerprints come from the run's own record, so the run id stays the
same.  The new attempt goes through :func:`~metalab.execution._worker.run_job`
like any run (claim, ``running`` record, heartbeat, one final record,
provenance), in the calling thread.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from metalab._errors import NotFoundError, OperationImportError, ValidationError
from metalab.definition import RunSpec, SeedBundle, context_fingerprint, load_operation
from metalab.execution._provenance import code_provenance
from metalab.execution._worker import Job, run_job
from metalab.model import RunRecord
from metalab.query import effective_status

__all__ = ["EXECUTOR_NAME", "rerun_run"]

log = logging.getLogger("metalab.execution")

#: the executor name a rerun records in the run's provenance
EXECUTOR_NAME = "rerun"
#: contexts tried when none is given: an experiment made with one of these needs none
_PLAIN_CONTEXTS: tuple[Any, ...] = (None, {})
_UNSET: Any = object()


def _manifest_for(store: Any, record: RunRecord) -> dict[str, Any]:
    """The newest manifest of the run's experiment that lists the run (else the newest)."""
    manifests = [m for _, m in store.list_experiment_manifests(record.experiment_id)]
    if not manifests:
        raise NotFoundError(
            f"experiment {record.experiment_id!r} has no manifest in the store, so the "
            f"operation of run {record.run_id} is unknown; run the experiment with metalab.run()"
        )
    listing = [m for m in manifests if record.run_id in (m.get("run_ids") or ())]
    return (listing or manifests)[-1]


def _context_for(record: RunRecord, context: Any) -> Any:
    """The context to run with; its fingerprint must be the run's."""
    wanted = record.context_fingerprint
    if context is _UNSET:
        for plain in _PLAIN_CONTEXTS:
            if context_fingerprint(plain) == wanted:
                return plain
        raise ValidationError(
            f"run {record.run_id} was made with a context (fingerprint {wanted or 'unknown'}) "
            "that the store does not hold; pass it: rerun_run(..., context=ctx), or on the "
            "command line --context package.module:name"
        )
    got = context_fingerprint(context)
    if got != wanted:
        raise ValidationError(
            f"the given context has fingerprint {got}, but run {record.run_id} was made with "
            f"{wanted or 'an unknown one'}; rerunning with it would store results under an id "
            "that does not describe them. Pass the context the run was made with"
        )
    return context


def _check_status(record: RunRecord, force: bool) -> None:
    status = effective_status(record.to_dict())
    if status == "running":
        raise ValidationError(
            f"run {record.run_id} is running (its heartbeat is recent); wait for it to end"
        )
    if status == "success" and not force:
        raise ValidationError(
            f"run {record.run_id} succeeded; pass --force (force=True) to execute it again"
        )


def rerun_run(store: Any, run_id: str, *, context: Any = _UNSET, force: bool = False) -> RunRecord:
    """Execute run ``run_id`` of the scoped ``store`` again; returns its new final record.

    Meant for a ``failed``, ``cancelled`` or ``lost`` run; a ``success`` is
    executed again only with ``force``.  ``context``: the experiment's
    context; needed only when the run was not made with ``None`` or ``{}``
    (it is not stored), and its fingerprint must be the run's.  Derived
    metrics are not recomputed (the manifest does not name them).

    Raises:
        NotFoundError: no such run, or its experiment has no manifest.
        ValidationError: the run is running or succeeded (without ``force``),
            or the context is missing or is another one.
        OperationImportError: the operation cannot be imported (the message
            says which part failed).
        ClaimedElsewhereError: another launch holds a live claim on the run.
        StoreError / OSError: from the store (see :func:`run_job`).
    """
    record = store.get_run_record(run_id)
    if record is None:
        raise NotFoundError(f"the store has no run {run_id!r}")
    _check_status(record, force)
    manifest = _manifest_for(store, record)
    ref = str((manifest.get("operation") or {}).get("ref") or "")
    try:
        operation = load_operation(ref)
    except OperationImportError as exc:
        raise OperationImportError(f"cannot rerun run {run_id}: {exc}") from exc
    recorded_hash = (manifest.get("operation") or {}).get("code_hash")
    if recorded_hash and operation.code_hash and recorded_hash != operation.code_hash:
        log.warning("the code of operation %s changed since run %s was launched", ref, run_id)
    run_ids = list(manifest.get("run_ids") or ())
    spec = RunSpec(
        index=run_ids.index(run_id) if run_id in run_ids else -1,
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        params=dict(record.params),
        seed=SeedBundle.from_dict(record.seed),
        tags=tuple(record.tags),
        context_fingerprint=record.context_fingerprint,
        params_fingerprint=record.params_fingerprint,
        seed_fingerprint=record.seed_fingerprint,
    )
    job = Job(
        spec=spec, operation=operation, context=_context_for(record, context), store=store,
        attempt=record.attempt + 1, metadata=dict(manifest.get("metadata") or {}),
        resume=not force, code_provenance=code_provenance(operation),
    )
    return run_job(job, EXECUTOR_NAME, f"{EXECUTOR_NAME}-{os.getpid()}")
