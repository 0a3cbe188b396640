"""SlurmExecutor: index-addressed SLURM job arrays driven through the store.

Submission (client side, :meth:`SlurmExecutor.submit_batch`, called by
``metalab.run``):

* the experiment is shipped ONCE: ``experiment.pkl`` holds its definition
  without the operation (name, version, context, param source, seed plan,
  ...), the operation travels as its ``module:qualname`` reference;
* ``submission.json`` (the submission manifest) lists the run indices to
  execute as ranges, the chunk size, the arrays and their job ids, and the
  store as a config dict with any password removed (workers read it from
  their environment / ``~/.pgpass``);
* one sbatch script (:func:`render_sbatch_script`, a pure function) is
  submitted once per array: task ``t`` of the array with offset ``o``
  executes the runs at positions ``(o + t) * chunk_size ...`` of the pending
  list, rebuilding each run's spec with the experiment's O(1) ``spec(i)``.

Everything lives under ``{experiment folder}/.slurm/{submission_id}/``
(so the store must have a shared working directory); the experiment
manifest stored by ``run`` points to it, which is how :func:`reconnect`
finds the submission from another process.  Progress is read back from the
store's run records plus ``squeue`` (:mod:`~metalab.execution._slurm_handle`).

The parts: options and script in :mod:`~metalab.execution._slurm_config`,
the submission's files in :mod:`~metalab.execution._slurm_files`, the SLURM
commands in :mod:`~metalab.execution._slurm_queue`, the program of a task in
:mod:`~metalab.execution._slurm_task`.
"""


from __future__ import annotations

import os
import pickle
import re
import sys
import uuid
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError, ValidationError
from metalab._internal import _json
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._time import compact_ts, to_iso, utcnow
from metalab.execution._batch import Batch
from metalab.execution._executors import Executor
from metalab.execution._slurm_config import SlurmConfig, render_sbatch_script
from metalab.execution._slurm_files import (
    EXPERIMENT_FILE,
    SCRIPT_FILE,
    SUBMISSION_FILE,
    SUBMISSION_FORMAT,
    encode_ranges,
    position_to_index,
    range_starts,
    sanitize_store_config,
    submission_dir,
    write_experiment_file,
)
from metalab.execution._slurm_handle import SlurmRunHandle, reconnect
from metalab.execution._slurm_queue import cluster_max_array_size, run_cmd, scancel

if TYPE_CHECKING:
    from metalab.execution._worker import Job

__all__ = [
    "SUBMISSION_FILE",
    "SlurmConfig",
    "SlurmExecutor",
    "SlurmRunHandle",
    "encode_ranges",
    "position_to_index",
    "range_starts",
    "reconnect",
    "render_sbatch_script",
    "sanitize_store_config",
]

#: longest SLURM job name metalab derives from the experiment name
_MAX_JOB_NAME = 100
#: random hex characters after the timestamp of a submission id
_SUBMISSION_TOKEN_CHARS = 6


class SlurmExecutor(Executor):
    """Submits experiments to SLURM as job arrays (use it with ``metalab.run``).

    ``SlurmExecutor(SlurmConfig(...))`` or ``SlurmExecutor(partition=...,
    chunk_size=...)`` (keyword options are :class:`SlurmConfig` fields;
    unknown ones raise ValidationError listing the valid ones).

    ``metalab.run(exp, store=..., executor=SlurmExecutor(...))`` returns a
    :class:`SlurmRunHandle` as soon as the arrays are queued; the submitting
    process may exit, :func:`reconnect` picks the submission up again.  The
    store must live on a filesystem the nodes share (FileStore, or
    PostgresStore with a shared ``file_root``); the operation must be
    importable on the nodes.  With ``dry_run=True`` everything is rendered and
    written but ``sbatch`` is not called (the handle then reports every run
    as pending and :meth:`SlurmRunHandle.wait` returns at once).
    """

    name = "slurm"
    in_process = False

    def __init__(self, config: SlurmConfig | None = None, *, dry_run: bool = False, **options: Any) -> None:
        if config is None:
            config = SlurmConfig(**options)
        elif not isinstance(config, SlurmConfig):
            raise ValidationError(f"SlurmExecutor needs a SlurmConfig, got {type(config).__name__}")
        elif options:
            config = config.replace(**options)
        self.config = config
        self.dry_run = bool(dry_run)

    def submit(self, job: Job) -> Any:
        raise ExecutionError(
            "SlurmExecutor submits whole experiments: use metalab.run(experiment, store=..., "
            "executor=SlurmExecutor(...))"
        )

    def __repr__(self) -> str:
        return f"SlurmExecutor({self.config!r})"

    # ------------------------------------------------------------ submission
    def submit_batch(self, batch: Batch) -> SlurmRunHandle:
        """Write the submission, store the manifest, queue the arrays; see the module docstring.

        Returns at once with a :class:`SlurmRunHandle`.

        Raises:
            ExecutionError: the store has no shared folder, ``sbatch`` is
                missing or refused the job (its message is included).
            OperationImportError / ExecutionError: a derived metric or the
                experiment's definition cannot be pickled for the nodes.
        """
        store = batch.store
        if not store.supports_working_directory:
            raise ExecutionError(
                f"SlurmExecutor needs a store with a shared folder (FileStore or PostgresStore with "
                f"file_root); {type(store).__name__} has none"
            )
        for item in batch.derived_metrics:
            if not isinstance(item, str):
                pickle.dumps(item)  # fail here, not on the nodes
        submission_id = f"{compact_ts(utcnow())}-{uuid.uuid4().hex[:_SUBMISSION_TOKEN_CHARS]}"
        sub_dir = submission_dir(store, submission_id)
        os.makedirs(os.path.join(sub_dir, "logs"), exist_ok=True)
        write_experiment_file(sub_dir, batch.experiment, batch.derived_metrics)
        doc = self._submission_doc(batch, submission_id)
        self._write_script(batch.experiment, sub_dir)
        sub_path = os.path.join(sub_dir, SUBMISSION_FILE)
        atomic_write_bytes(sub_path, _json.dumps_pretty(doc))
        manifest = batch.manifest
        manifest["executor"] = self.name
        manifest["submission"] = {
            "kind": "slurm", "id": submission_id,
            "path": os.path.relpath(sub_path, store.get_working_directory()),
        }
        store.put_experiment_manifest(batch.experiment_id, manifest)
        if not self.dry_run:
            self._queue_arrays(doc, sub_dir)
        return SlurmRunHandle(
            store, doc, [spec.run_id for spec, _ in batch.pending], progress=batch.progress,
            on_event=batch.on_event, skipped_ids=batch.skipped, all_run_ids=manifest.get("run_ids"),
        )

    def _write_script(self, experiment: Any, sub_dir: str) -> None:
        """Render the submission's sbatch script into ``sub_dir``."""
        cfg = self.config
        default_name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"metalab-{experiment.name}")[:_MAX_JOB_NAME]
        script = render_sbatch_script(
            cfg,
            job_name=cfg.job_name or default_name,
            python=cfg.python or sys.executable,
            submission=os.path.join(sub_dir, SUBMISSION_FILE),
            log_dir=os.path.join(sub_dir, "logs"),
            workdir=os.getcwd(),
        )
        atomic_write_bytes(os.path.join(sub_dir, SCRIPT_FILE), script.encode())

    def _array_limit(self) -> int:
        """The most tasks one array may hold: the configured limit, capped by the cluster's."""
        cfg = self.config
        if cfg.max_array_size is None:
            return cluster_max_array_size()
        if self.dry_run:
            return cfg.max_array_size
        return min(cfg.max_array_size, cluster_max_array_size())

    def _submission_doc(self, batch: Batch, submission_id: str) -> dict[str, Any]:
        """The submission manifest (``submission.json``), its arrays not yet queued."""
        from metalab.query import heartbeat_interval, lost_after_seconds

        cfg = self.config
        experiment, store, pending = batch.experiment, batch.store, batch.pending
        indices = [spec.index for spec, _ in pending]
        chunk = cfg.chunk_size
        n_tasks = -(-len(indices) // chunk)
        limit = self._array_limit()
        arrays: list[dict[str, Any]] = [
            {"offset": off, "count": min(limit, n_tasks - off), "job_id": None}
            for off in range(0, n_tasks, limit)
        ]
        return {
            "format": SUBMISSION_FORMAT,
            "version": 1,
            "submission_id": submission_id,
            "experiment_id": experiment.experiment_id,
            "submitted_at": batch.manifest.get("submitted_at") or to_iso(utcnow()),
            "store": store.config.to_dict(include_password=False),
            "operation_ref": experiment.operation.ref,
            "experiment_file": EXPERIMENT_FILE,
            "context_fingerprint": experiment.context_fingerprint,
            "total_runs": experiment.total_runs,
            "skipped": len(batch.skipped),
            "pending": encode_ranges(indices),
            "n_pending": len(indices),
            "chunk_size": chunk,
            "n_tasks": n_tasks,
            "arrays": arrays,
            "baseline": {spec.run_id: attempt for spec, attempt in pending if attempt},
            "metadata": batch.metadata,
            "heartbeat_interval": heartbeat_interval(),
            "lost_after": lost_after_seconds(),
            "sys_path": [p for p in sys.path if p and os.path.isdir(p)],
            "config": cfg.to_dict(),
            "script": SCRIPT_FILE,
            "dry_run": self.dry_run,
            "cancelled": False,
        }

    def _queue_arrays(self, doc: dict[str, Any], sub_dir: str) -> None:
        """``sbatch`` every array of ``doc`` and record the job ids in its file.

        On any failure the arrays already queued are cancelled and the
        submission file says ``cancelled``.
        """
        cfg = self.config
        sub_path = os.path.join(sub_dir, SUBMISSION_FILE)
        script_path = os.path.join(sub_dir, SCRIPT_FILE)
        arrays: list[dict[str, Any]] = doc["arrays"]
        previous_job: str | None = None
        try:
            for arr in arrays:
                args = ["sbatch", "--parsable", f"--array=0-{arr['count'] - 1}" + (
                    f"%{cfg.max_concurrent}" if cfg.max_concurrent else "")]
                if cfg.max_concurrent and previous_job:
                    args.append(f"--dependency=afterany:{previous_job}")
                args += [script_path, str(arr["offset"])]
                proc = run_cmd(args)
                if proc.returncode != 0:
                    raise ExecutionError(
                        f"sbatch refused the job (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}; script: {script_path}"
                    )
                arr["job_id"] = previous_job = proc.stdout.strip().split(";")[0]
        except BaseException:
            scancel([a["job_id"] for a in arrays if a["job_id"]])
            doc["cancelled"] = True
            atomic_write_bytes(sub_path, _json.dumps_pretty(doc))
            raise
        atomic_write_bytes(sub_path, _json.dumps_pretty(doc))

