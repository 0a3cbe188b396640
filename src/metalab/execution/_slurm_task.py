"""The program one SLURM array task runs: ``python -m metalab.execution._slurm_task SUBMISSION OFFSET``.

Task ``SLURM_ARRAY_TASK_ID`` of the array whose offset is ``OFFSET`` runs
the pending runs at positions ``[(OFFSET + task) * chunk_size, ... +
chunk_size)`` one after the other: it rebuilds each spec with the
experiment's O(1) ``spec(i)``, skips runs that already succeeded, claims
the run and executes it (records, heartbeats, logs as everywhere).  SIGTERM
(``scancel``, preemption) ends the current run as ``cancelled`` and stops
the task.  If the operation cannot be imported on this node, every run of
the task gets a ``failed`` record whose error (and run log) says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from metalab.execution._worker import EXIT_SIGTERM, sigterm_exit

__all__ = ["main", "run_task"]

log = logging.getLogger("metalab.execution")

#: exit status for a wrong command line (as argparse uses)
EXIT_USAGE = 2


class _BrokenOperation:
    """Stands in for an operation that cannot be imported: every call fails with the import error."""

    def __init__(self, ref: str, error: BaseException) -> None:
        self.ref = ref
        self.code_hash = ""
        self._error = error

    def __call__(self, **available: Any) -> Any:
        logging.getLogger("metalab.worker").error(
            "the operation %s cannot be imported on node %s: %s", self.ref, socket.gethostname(), self._error
        )
        raise self._error


def run_task(submission_path: str, task_index: int) -> int:
    """Execute the runs of global task ``task_index``; returns the process exit code."""
    from metalab._errors import CorruptRecordError, OperationImportError
    from metalab._internal import _json
    from metalab.definition import load_operation
    from metalab.execution._claims import ClaimedElsewhereError
    from metalab.execution._provenance import code_provenance
    from metalab.execution._slurm_files import load_experiment, position_to_index, range_starts
    from metalab.execution._worker import (
        FinalRecordNotSavedError,
        Job,
        _redirect_std,
        is_interrupt,
        run_job,
    )
    from metalab.model import Status
    from metalab.store import StoreConfig

    with open(submission_path, "rb") as fh:
        sub = _json.loads(fh.read())
    _adopt_submitter_settings(sub)
    ranges = sub["pending"]
    starts = range_starts(ranges)
    chunk = int(sub["chunk_size"])
    first = task_index * chunk
    last = min(first + chunk, int(sub["n_pending"]))
    if first >= last:
        print(f"metalab: task {task_index} has no runs (nothing to do)", flush=True)
        return 0
    store = StoreConfig.from_dict(sub["store"]).connect()
    exp_path = os.path.join(os.path.dirname(submission_path), sub["experiment_file"])
    experiment, derived = load_experiment(exp_path, sub)
    ref = str(sub["operation_ref"])
    op: Any
    try:
        op = load_operation(ref)
    except OperationImportError as exc:
        print(f"metalab: ERROR: {exc}", file=sys.stderr, flush=True)
        op = _BrokenOperation(ref, exc)
    worker_id = _worker_id()
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, sigterm_exit)
    metadata = dict(sub.get("metadata") or {})
    # this task imports the code it runs: its provenance is taken here, once per task
    code = None if isinstance(op, _BrokenOperation) else code_provenance(op)
    for position in range(first, last):
        spec = experiment.spec(position_to_index(ranges, starts, position))
        try:
            previous = store.get_run_record(spec.run_id)
        except CorruptRecordError as exc:
            # readers skip a damaged record; the new attempt's records replace it
            print(f"metalab: run {spec.run_id}: its record is unreadable ({exc}); running it", flush=True)
            previous = None
        if previous is not None and previous.status is Status.SUCCESS:
            print(f"metalab: run {spec.run_id} already succeeded; skipped", flush=True)
            continue
        job = Job(
            spec=spec, operation=op, context=experiment.context, store=store,
            attempt=(previous.attempt if previous is not None else 0) + 1,
            metadata=metadata, derived_metrics=derived, resume=True,
            # the handle learns of the start from the record: write it at once
            running_record_after=0.0, code_provenance=code,
        )
        try:
            with _redirect_std(store, spec.run_id):
                record = run_job(job, "slurm", worker_id)
        except (ClaimedElsewhereError, FinalRecordNotSavedError) as exc:
            print(f"metalab: {exc}", flush=True)
            continue
        print(f"metalab: run {spec.run_id} (index {spec.index}) ended {record.status.value}", flush=True)
        if is_interrupt(record):
            print("metalab: stopped by SIGTERM; the remaining runs of this task were not started", flush=True)
            return EXIT_SIGTERM
    return 0


def _adopt_submitter_settings(sub: dict[str, Any]) -> None:
    """Import path, heartbeat interval and lost-after delay of the submitting process
    (environment variables set on the node win)."""
    for path in reversed(sub.get("sys_path") or []):
        if path not in sys.path:
            sys.path.insert(0, path)
    from metalab.query import HEARTBEAT_INTERVAL_ENV, LOST_AFTER_ENV

    for key, name in (("heartbeat_interval", HEARTBEAT_INTERVAL_ENV), ("lost_after", LOST_AFTER_ENV)):
        if sub.get(key) and not os.environ.get(name):
            os.environ[name] = str(sub[key])


def _worker_id() -> str:
    """``slurm-{array job}_{task}@{host}``: names this task in run records."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "?")
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "?")
    return f"slurm-{job}_{task}@{socket.gethostname()}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m metalab.execution._slurm_task SUBMISSION.json [OFFSET]", file=sys.stderr)
        return EXIT_USAGE
    offset = int(args[1]) if len(args) == 2 else 0
    task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_task(args[0], offset + task)
    except SystemExit as exc:  # SIGTERM between runs
        return int(exc.code) if isinstance(exc.code, int) else EXIT_SIGTERM


if __name__ == "__main__":
    sys.exit(main())
