"""SlurmExecutor: index-addressed SLURM job arrays driven through the store.

Submission (client side, :meth:`SlurmExecutor.submit_experiment`, called by
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
store's run records plus ``squeue``.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError, NotFoundError, ValidationError
from metalab._internal import _json
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._redact import without_secrets
from metalab._internal._time import compact_ts, to_iso, utcnow
from metalab.execution._events import Event, EventCallback, EventDispatcher, EventKind
from metalab.execution._executors import Executor
from metalab.execution._handle import RunStatus, submission_results
from metalab.model import ErrorInfo

if TYPE_CHECKING:
    from metalab.execution._worker import Job
    from metalab.store import Store

__all__ = [
    "SUBMISSION_FILE",
    "SlurmConfig",
    "SlurmExecutor",
    "SlurmRunHandle",
    "encode_ranges",
    "position_to_index",
    "reconnect",
    "render_sbatch_script",
    "sanitize_store_config",
]

log = logging.getLogger("metalab.execution")

SUBMISSION_FILE = "submission.json"
SUBMISSION_FORMAT = "metalab-slurm-submission"
EXPERIMENT_FILE = "experiment.pkl"
SCRIPT_FILE = "job.sbatch"
_RESERVED_SBATCH = frozenset(
    {"array", "output", "error", "job-name", "J", "o", "e", "a", "parsable", "wait", "W", "chdir", "D"}
)
_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
#: seconds a SLURM command (sbatch, scancel) may take before it is killed
_CMD_TIMEOUT_S = 60.0
#: seconds ``scontrol show config`` and ``squeue`` may take (the poll retries)
_QUERY_TIMEOUT_S = 30
#: SLURM's own default ``MaxArraySize``, assumed when the cluster's cannot be read
_DEFAULT_MAX_ARRAY_SIZE = 1001
#: up to this many open runs, the handle reads their records one by one; more: one scan
_READ_ONE_BY_ONE_MAX = 500
#: pickle protocol of ``experiment.pkl`` (5: out-of-band buffers, Python >= 3.8)
_PICKLE_PROTOCOL = 5


# ------------------------------------------------------------------- config
def _as_lines(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [line for line in value.splitlines() if line.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValidationError(f"SlurmConfig {what} must be a string or a list of strings, got {value!r}")
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"SlurmConfig {what} must hold strings, got {item!r}")
    return tuple(items)


def _positive(value: Any, what: str, allow_none: bool = False, allow_zero: bool = False) -> Any:
    if value is None and allow_none:
        return None
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative int" if allow_zero else "a positive int"
        raise ValidationError(f"SlurmConfig {what} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    return value


def _extra_sbatch(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items: list[str] = []
    if isinstance(value, Mapping):
        for key, val in value.items():
            key = str(key).lstrip("-")
            items.append(f"--{key}" if val is None or val is True else f"--{key}={val}")
    else:
        for item in _as_lines(value, "extra_sbatch"):
            item = item.strip()
            items.append(item if item.startswith("-") else f"--{item}")
    for item in items:
        if "\n" in item or "\r" in item:
            raise ValidationError(f"SlurmConfig extra_sbatch option {item!r} contains a newline")
        name = item.lstrip("-").split("=", 1)[0].split(" ", 1)[0]
        if name in _RESERVED_SBATCH:
            raise ValidationError(
                f"SlurmConfig extra_sbatch must not set {item!r}: metalab sets --array, --output, "
                "--job-name and --chdir itself (use job_name= for the name)"
            )
    return tuple(items)


@dataclasses.dataclass(frozen=True, init=False)
class SlurmConfig:
    """Resources and behaviour of a SLURM submission (immutable).

    Args:
        partition: ``--partition`` (None: the cluster's default).
        time: wall time per array task, ``"HH:MM:SS"`` / ``"D-HH:MM:SS"`` /
            minutes (covers ``chunk_size`` runs).
        cpus: ``--cpus-per-task``.
        memory: ``--mem`` such as ``"4G"`` (None: the cluster's default).
        gpus: GPUs per task (``--gres=gpu:N``), 0 for none.
        max_concurrent: at most this many tasks of an array run at once
            (``--array=...%N``); several arrays then run one after the other.
        chunk_size: runs executed one after the other by one array task.
        max_array_size: most tasks per array; None asks the cluster
            (``MaxArraySize``).  Bigger sweeps are split into several arrays.
        modules: ``module load`` these before starting Python.
        setup: shell lines run before Python (``source venv/bin/activate``).
        extra_sbatch: more ``#SBATCH`` options, a dict (``{"account": "x"}``)
            or strings (``["--qos=long", "--exclusive"]``).
        python: interpreter on the nodes (default: this process's).
        job_name: SLURM job name (default ``metalab-<experiment name>``).
        poll_interval: seconds between two polls of the store and ``squeue``.

    Unknown options raise :class:`~metalab.ValidationError` listing the
    valid ones.
    """

    partition: str | None
    time: str
    cpus: int
    memory: str | None
    gpus: int
    max_concurrent: int | None
    chunk_size: int
    max_array_size: int | None
    modules: tuple[str, ...]
    setup: tuple[str, ...]
    extra_sbatch: tuple[str, ...]
    python: str | None
    job_name: str | None
    poll_interval: float

    def __init__(
        self,
        partition: str | None = None,
        time: str = "01:00:00",
        cpus: int = 1,
        memory: str | None = None,
        gpus: int = 0,
        max_concurrent: int | None = None,
        chunk_size: int = 1,
        max_array_size: int | None = None,
        modules: Sequence[str] | str = (),
        setup: Sequence[str] | str = (),
        extra_sbatch: Mapping[str, Any] | Sequence[str] | str = (),
        python: str | None = None,
        job_name: str | None = None,
        poll_interval: float = 1.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ValidationError(
                f"unknown SlurmConfig option(s) {sorted(unknown)}; valid options: "
                f"{', '.join(SlurmConfig.option_names())}"
            )
        if partition is not None and (not isinstance(partition, str) or not partition.strip()):
            raise ValidationError(f"SlurmConfig partition must be a non-empty string or None, got {partition!r}")
        if isinstance(time, int) and not isinstance(time, bool):
            time = str(time)
        if not isinstance(time, str) or not _TIME_RE.match(time):
            raise ValidationError(
                f"SlurmConfig time must look like '01:30:00', '2-00:00:00' or minutes '90', got {time!r}"
            )
        if memory is not None and (not isinstance(memory, str) or not _MEM_RE.match(memory)):
            raise ValidationError(f"SlurmConfig memory must look like '4G' or '500M', got {memory!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or poll_interval <= 0:
            raise ValidationError(f"SlurmConfig poll_interval must be a positive number, got {poll_interval!r}")
        for name, text in (("python", python), ("job_name", job_name)):
            if text is not None and (not isinstance(text, str) or not text.strip() or "\n" in text):
                raise ValidationError(f"SlurmConfig {name} must be a one-line string or None, got {text!r}")
        values = {
            "partition": partition,
            "time": time,
            "cpus": _positive(cpus, "cpus"),
            "memory": memory,
            "gpus": _positive(gpus, "gpus", allow_zero=True),
            "max_concurrent": _positive(max_concurrent, "max_concurrent", allow_none=True),
            "chunk_size": _positive(chunk_size, "chunk_size"),
            "max_array_size": _positive(max_array_size, "max_array_size", allow_none=True),
            "modules": _as_lines(modules, "modules"),
            "setup": _as_lines(setup, "setup"),
            "extra_sbatch": _extra_sbatch(extra_sbatch),
            "python": python,
            "job_name": job_name,
            "poll_interval": float(poll_interval),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @staticmethod
    def option_names() -> list[str]:
        """The valid option names (the dataclass fields)."""
        return [f.name for f in dataclasses.fields(SlurmConfig)]

    def replace(self, **changes: Any) -> SlurmConfig:
        """A copy with some options changed (unknown names raise ValidationError)."""
        values = self.to_dict()
        values.update(changes)
        return SlurmConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}


# ---------------------------------------------------------- sbatch script
def render_sbatch_script(
    config: SlurmConfig,
    *,
    job_name: str,
    python: str,
    submission: str,
    log_dir: str,
    workdir: str,
) -> str:
    """The sbatch script of a submission (a pure function of its arguments).

    The array range (``--array``) is given on the ``sbatch`` command line,
    and the array's offset as the script's first argument, so one script
    serves every array of a sweep.  The script ends by ``exec``-ing Python
    so that SIGTERM from ``scancel`` reaches the worker directly.
    """
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --output={log_dir}/%A_%a.out",
        f"#SBATCH --chdir={workdir}",
    ]
    if config.partition:
        lines.append(f"#SBATCH --partition={config.partition}")
    lines.append(f"#SBATCH --time={config.time}")
    lines.append("#SBATCH --ntasks=1")
    lines.append(f"#SBATCH --cpus-per-task={config.cpus}")
    if config.memory:
        lines.append(f"#SBATCH --mem={config.memory}")
    if config.gpus:
        lines.append(f"#SBATCH --gres=gpu:{config.gpus}")
    lines.extend(f"#SBATCH {opt}" for opt in config.extra_sbatch)
    lines.append("")
    lines.append("set -e")
    lines.extend(f"module load {q(m)}" for m in config.modules)
    lines.extend(config.setup)
    lines.append("export PYTHONUNBUFFERED=1")
    lines.append(
        f'exec {q(python)} -m metalab.execution._slurm_task {q(submission)} "${{1:-0}}"'
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- ranges
def encode_ranges(indices: Sequence[int]) -> list[list[int]]:
    """Sorted run indices as ``[[start, stop), ...]`` ranges (compact in JSON)."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def position_to_index(ranges: Sequence[Sequence[int]], starts: Sequence[int], position: int) -> int:
    """The run index at ``position`` of the list encoded by ``ranges``.

    ``starts`` are the cumulative counts before each range (see
    :func:`range_starts`).
    """
    k = bisect.bisect_right(starts, position) - 1
    return int(ranges[k][0]) + position - starts[k]


def range_starts(ranges: Sequence[Sequence[int]]) -> list[int]:
    starts, total = [], 0
    for start, stop in ranges:
        starts.append(total)
        total += stop - start
    return starts


# ---------------------------------------------------------------- secrets
def sanitize_store_config(config: dict[str, Any]) -> dict[str, Any]:
    """A store config dict with every password removed (URIs and ``password=`` pairs).

    The rule of :meth:`StoreConfig.to_dict(include_password=False)
    <metalab.store.StoreConfig.to_dict>` for a dict already made.  Workers
    rebuild the store and get the password from their environment
    (``PGPASSWORD``, ``~/.pgpass``).
    """
    return without_secrets(config)


# ---------------------------------------------------------------- helpers
def _run_cmd(args: list[str], timeout: float = _CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(args[0])
    if exe is None:
        raise ExecutionError(
            f"{args[0]!r} was not found on PATH: SLURM client tools are needed to submit "
            "(run on a login node, or install slurm-client); for a local test cluster see "
            "scripts/slurm_up.sh"
        )
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=timeout, check=False)


def cluster_max_array_size() -> int:
    """``MaxArraySize`` of the cluster (default 1001 if it cannot be read)."""
    try:
        proc = _run_cmd(["scontrol", "show", "config"], timeout=_QUERY_TIMEOUT_S)
    except (ExecutionError, subprocess.SubprocessError, OSError):
        return _DEFAULT_MAX_ARRAY_SIZE
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    return int(m.group(1)) if m else _DEFAULT_MAX_ARRAY_SIZE


def _submission_dir(store: Store, submission_id: str) -> str:
    return os.path.join(store.get_working_directory(), ".slurm", submission_id)


def _experiment_parts(experiment: Any, derived: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "version": experiment.version,
        "context": experiment.context,
        "params": experiment.params,
        "seeds": experiment.seeds,
        "description": experiment.description,
        "tags": tuple(experiment.tags),
        "metadata": dict(experiment.metadata or {}),
        "derived_metrics": derived,
    }


# --------------------------------------------------------------- executor
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
    def submit_experiment(
        self,
        experiment: Any,
        store: Store,
        *,
        pending: Sequence[tuple[Any, int]],
        skipped: Sequence[str],
        manifest: dict[str, Any],
        progress: bool,
        on_event: EventCallback | None,
        derived_metrics: tuple[Any, ...],
    ) -> SlurmRunHandle:
        """Write the submission and queue its arrays; see the module docstring.

        ``pending`` holds ``(spec, previous attempt)`` of the runs to execute.

        Raises:
            ExecutionError: the store has no shared folder, ``sbatch`` is
                missing or refused the job (its message is included).
        """
        if not store.supports_working_directory:
            raise ExecutionError(
                f"SlurmExecutor needs a store with a shared folder (FileStore or PostgresStore with "
                f"file_root); {type(store).__name__} has none"
            )
        cfg = self.config
        for item in derived_metrics:
            if not isinstance(item, str):
                pickle.dumps(item)  # fail here, not on the nodes
        submission_id = f"{compact_ts(utcnow())}-{uuid.uuid4().hex[:6]}"
        sub_dir = _submission_dir(store, submission_id)
        log_dir = os.path.join(sub_dir, "logs")
        os.makedirs(log_dir, exist_ok=True)
        _write_experiment_file(sub_dir, experiment, derived_metrics)

        sub_path = os.path.join(sub_dir, SUBMISSION_FILE)
        doc = self._submission_doc(experiment, store, submission_id, pending, skipped, manifest)
        script = render_sbatch_script(
            cfg,
            job_name=cfg.job_name or re.sub(r"[^A-Za-z0-9_.-]", "_", f"metalab-{experiment.name}")[:100],
            python=cfg.python or sys.executable,
            submission=sub_path,
            log_dir=log_dir,
            workdir=os.getcwd(),
        )
        atomic_write_bytes(os.path.join(sub_dir, SCRIPT_FILE), script.encode())
        atomic_write_bytes(sub_path, _json.dumps_pretty(doc))
        manifest["executor"] = self.name
        manifest["submission"] = {"kind": "slurm", "id": submission_id, "path": os.path.relpath(sub_path, store.get_working_directory())}
        store.put_experiment_manifest(experiment.experiment_id, manifest)

        if not self.dry_run:
            self._queue_arrays(doc, sub_dir)

        run_ids = [spec.run_id for spec, _ in pending]
        handle = SlurmRunHandle(
            store, doc, run_ids, progress=progress, on_event=on_event, skipped_ids=skipped,
            all_run_ids=manifest.get("run_ids"),
        )
        return handle

    def _array_limit(self) -> int:
        """The most tasks one array may hold: the configured limit, capped by the cluster's."""
        cfg = self.config
        if cfg.max_array_size is None:
            return cluster_max_array_size()
        if self.dry_run:
            return cfg.max_array_size
        return min(cfg.max_array_size, cluster_max_array_size())

    def _submission_doc(
        self,
        experiment: Any,
        store: Store,
        submission_id: str,
        pending: Sequence[tuple[Any, int]],
        skipped: Sequence[str],
        manifest: dict[str, Any],
    ) -> dict[str, Any]:
        """The submission manifest (``submission.json``), its arrays not yet queued."""
        from metalab.execution._claims import heartbeat_interval
        from metalab.query import lost_after_seconds

        cfg = self.config
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
            "submitted_at": manifest.get("submitted_at") or to_iso(utcnow()),
            "store": store.config.to_dict(include_password=False),
            "operation_ref": experiment.operation.ref,
            "experiment_file": EXPERIMENT_FILE,
            "context_fingerprint": experiment.context_fingerprint,
            "total_runs": experiment.total_runs,
            "skipped": len(skipped),
            "pending": encode_ranges(indices),
            "n_pending": len(indices),
            "chunk_size": chunk,
            "n_tasks": n_tasks,
            "arrays": arrays,
            "baseline": {spec.run_id: attempt for spec, attempt in pending if attempt},
            "metadata": dict(getattr(experiment, "metadata", None) or {}),
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
                proc = _run_cmd(args)
                if proc.returncode != 0:
                    raise ExecutionError(
                        f"sbatch refused the job (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}; script: {script_path}"
                    )
                arr["job_id"] = previous_job = proc.stdout.strip().split(";")[0]
        except BaseException:
            queued = [a["job_id"] for a in arrays if a["job_id"]]
            if queued:
                _run_cmd(["scancel", *queued])
            doc["cancelled"] = True
            atomic_write_bytes(sub_path, _json.dumps_pretty(doc))
            raise
        atomic_write_bytes(sub_path, _json.dumps_pretty(doc))


def _write_experiment_file(sub_dir: str, experiment: Any, derived_metrics: tuple[Any, ...]) -> None:
    """Pickle the experiment's definition (without the operation) into ``experiment.pkl``."""
    try:
        blob = pickle.dumps(_experiment_parts(experiment, derived_metrics), protocol=_PICKLE_PROTOCOL)
    except Exception as exc:
        raise ExecutionError(
            f"the definition of {experiment.experiment_id!r} cannot be pickled for SLURM "
            f"workers ({type(exc).__name__}: {exc}); use plain data in context and params"
        ) from exc
    atomic_write_bytes(os.path.join(sub_dir, EXPERIMENT_FILE), blob)


# ------------------------------------------------------------------ handle
_FINAL = {"success", "failed", "cancelled"}


class SlurmRunHandle:
    """A SLURM submission: status, waiting, results, cancellation.

    Same surface as :class:`~metalab.RunHandle` (``status``, ``done``,
    ``wait``, ``result``, ``cancel``, ``store``, ``experiment_id``), driven by
    polling the store's run records and ``squeue`` every
    ``SlurmConfig.poll_interval`` seconds.  Events (and the progress bar)
    are derived from that polling, in the order runs were seen to end.  The
    submission has ended when every submitted run has a final record, or
    when its jobs left the queue: runs then still ``running`` count as lost
    (their worker died) and runs never started as cancelled, except a run
    another launch's worker is executing (live heartbeat), which is waited for
    (its final record, or lost once the heartbeat stops).  Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        submission: dict[str, Any],
        run_ids: Sequence[str],
        *,
        progress: bool = False,
        on_event: EventCallback | None = None,
        skipped_ids: Sequence[str] = (),
        all_run_ids: Sequence[str] | None = None,
    ) -> None:
        self._store = store
        self._sub = submission
        #: every run of the submission (queued or skipped), for result()
        self._all_run_ids = tuple(all_run_ids) if all_run_ids is not None else None
        self._experiment_id = str(submission["experiment_id"])
        self._run_ids = list(run_ids)
        self._baseline: dict[str, int] = dict(submission.get("baseline") or {})
        self._total = int(submission["total_runs"])
        self._skipped = int(submission.get("skipped", 0))
        self._interval = float((submission.get("config") or {}).get("poll_interval", 1.0))
        self._lock = threading.RLock()
        self._state: dict[str, str] = {}  # run id -> running/success/failed/cancelled/lost
        self._open: set[str] = set(self._run_ids)
        self._elsewhere: set[str] = set()  # open runs another launch's worker was executing at the last poll
        self._queue = {"pending": 0, "running": 0}
        self._queue_empty_polls = 0
        self._finished = threading.Event()
        self._cancelled = bool(submission.get("cancelled"))
        self._last_poll = 0.0
        self._events = EventDispatcher()
        self._on_finish: list[Callable[[], None]] = []
        if progress:
            from metalab.execution._progress import ProgressDisplay

            display = ProgressDisplay(self._experiment_id, self._total)
            self._events.add(display)
            self._on_finish.append(display.stop)
        if on_event is not None:
            self._events.add(on_event)
        for rid in skipped_ids:
            self._events.emit(
                Event(EventKind.RUN_SKIPPED, rid, self._experiment_id, reason="already succeeded (resume=True)")
            )
        if submission.get("dry_run") or not self._run_ids:
            self._finish()
        self._poller: threading.Thread | None = None
        if (progress or on_event is not None) and not self._finished.is_set():
            self._poller = threading.Thread(target=self._poll_loop, name="metalab-slurm-poll", daemon=True)
            self._poller.start()

    # ------------------------------------------------------------ properties
    @property
    def store(self) -> Store:
        return self._store

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def submission(self) -> dict[str, Any]:
        """The submission manifest (a copy)."""
        return dict(self._sub)

    @property
    def job_ids(self) -> list[str]:
        return [str(a["job_id"]) for a in self._sub.get("arrays", []) if a.get("job_id")]

    @property
    def submission_dir(self) -> str:
        return _submission_dir(self._store, str(self._sub["submission_id"]))

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        self._maybe_poll()
        return self._finished.is_set()

    @property
    def status(self) -> RunStatus:
        """Counts from the store's records plus ``squeue`` (polls if the last poll is old).

        A run another launch's worker is executing counts in ``elsewhere``
        (not ``running``) until it ends.
        """
        self._maybe_poll()
        with self._lock:
            return self._counts()

    @property
    def queue(self) -> dict[str, int]:
        """Array tasks ``pending`` / ``running`` in ``squeue`` at the last poll."""
        with self._lock:
            return dict(self._queue)

    # ---------------------------------------------------------------- polling
    def _maybe_poll(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return
        if time.monotonic() - self._last_poll >= min(self._interval, 0.5):
            self.poll()

    def _poll_loop(self) -> None:
        while not self._finished.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("polling SLURM submission %s failed (retrying)", self._sub.get("submission_id"))
            self._finished.wait(self._interval)

    def _squeue(self) -> dict[str, int] | None:
        ids = self.job_ids
        if not ids:
            return {"pending": 0, "running": 0}
        try:
            proc = _run_cmd(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"], timeout=_QUERY_TIMEOUT_S)
        except (subprocess.SubprocessError, OSError, ExecutionError) as exc:
            log.warning("squeue failed: %s", exc)
            return None
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return {"pending": 0, "running": 0}
            log.warning("squeue failed (exit %s): %s", proc.returncode, proc.stderr.strip())
            return None
        out = {"pending": 0, "running": 0}
        for line in proc.stdout.splitlines():
            state = line.rpartition("|")[2].strip()
            if state in ("PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED"):
                out["pending"] += 1
            elif state:
                out["running"] += 1
        return out

    def _read_docs(self, run_ids: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if len(run_ids) <= _READ_ONE_BY_ONE_MAX:
            for rid in run_ids:
                try:
                    rec = self._store.get_run_record(rid)
                except Exception as exc:
                    log.warning("could not read run %s: %s", rid, exc)
                    continue
                if rec is not None:
                    out[rid] = rec.to_dict()
            return out
        for doc in self._store.iter_run_documents():
            doc_id = doc.get("run_id")
            if isinstance(doc_id, str) and doc_id in run_ids:
                out[doc_id] = doc
        return out

    def _of_this_submission(self, doc: dict[str, Any]) -> bool:
        """A record written for this submission (a success counts whoever wrote it)."""
        base = self._baseline.get(str(doc.get("run_id")))
        if base is None or doc.get("status") == "success":
            return True
        try:
            return int(doc.get("attempt") or 0) > base
        except (TypeError, ValueError):
            return False

    def poll(self) -> RunStatus:
        """Read the records and the queue once, emit events, return the status."""
        with self._lock:
            if self._finished.is_set():
                return self._status_nolock()
            self._last_poll = time.monotonic()
            queue = self._squeue()
            docs = self._read_docs(set(self._open))
            from metalab.query import DEFAULT_LOST_AFTER_S, effective_status

            now = datetime.now(UTC)
            lost_after = float(self._sub.get("lost_after") or DEFAULT_LOST_AFTER_S)
            ended: list[tuple[str, dict[str, Any], str]] = []
            elsewhere: set[str] = set()  # runs another launch's worker is executing now
            for rid, doc in docs.items():
                if not self._of_this_submission(doc):
                    continue
                status = effective_status(doc, now, lost_after)
                if status == "running":
                    if not self._our_worker(doc):
                        elsewhere.add(rid)
                    if self._state.get(rid) != "running":
                        self._state[rid] = "running"
                        self._events.emit(Event(EventKind.RUN_STARTED, rid, self._experiment_id))
                elif status in _FINAL or status == "lost":
                    ended.append((rid, doc, status))
            ended.sort(key=lambda item: str(item[1].get("finished_at") or item[1].get("heartbeat_at") or ""))
            for rid, doc, status in ended:
                self._end(rid, status, doc)
            if queue is not None:
                self._queue = queue
                if queue["pending"] or queue["running"]:
                    self._queue_empty_polls = 0
                else:
                    self._queue_empty_polls += 1
            # (our jobs gone: what is still open ends now, except runs another
            # launch is executing, whose final record or stopped heartbeat is
            # waited for)
            self._elsewhere = elsewhere
            if not self._open or self._queue_empty_polls >= 2:
                self._settle(keep=elsewhere)
            return self._status_nolock()

    def _our_worker(self, doc: dict[str, Any]) -> bool:
        """Whether the record was written by a task of this submission's jobs
        (worker id ``slurm-<job>_<task>@host``).  Any other worker is another
        launch's: its run is waited for while its heartbeat is live."""
        provenance = doc.get("provenance")
        worker = provenance.get("worker_id") if isinstance(provenance, dict) else None
        if not isinstance(worker, str) or not worker.startswith("slurm-"):
            return False
        job = worker[len("slurm-"):].split("_", 1)[0].split("@", 1)[0]
        return job in self.job_ids

    def _status_nolock(self) -> RunStatus:
        self._last_poll = time.monotonic()
        return self._counts()

    def _counts(self) -> RunStatus:
        counts = {"success": 0, "failed": 0, "cancelled": 0, "running": 0, "lost": 0}
        for state in self._state.values():
            counts[state] += 1
        elsewhere = len(self._elsewhere & self._open)
        running = max(0, counts["running"] - elsewhere)
        done = counts["success"] + counts["failed"] + counts["cancelled"] + counts["lost"] + self._skipped
        return RunStatus(
            total=self._total, done=done, success=counts["success"], failed=counts["failed"],
            cancelled=counts["cancelled"], running=running,
            pending=max(0, self._total - done - running - elsewhere), skipped=self._skipped,
            lost=counts["lost"], elsewhere=elsewhere,
        )

    def _end(self, rid: str, status: str, doc: dict[str, Any] | None, reason: str | None = None) -> None:
        if rid not in self._open:
            return
        if self._state.get(rid) != "running":
            self._events.emit(Event(EventKind.RUN_STARTED, rid, self._experiment_id))
        self._open.discard(rid)
        self._state[rid] = status
        error = None
        if doc is not None and isinstance(doc.get("error"), dict):
            try:
                error = ErrorInfo.from_dict(doc["error"])
            except Exception as exc:  # the event still reports the run's end, without its error
                log.debug("run %s: its record's error is malformed: %s", rid, exc)
                error = None
        kind = {
            "success": EventKind.RUN_FINISHED,
            "failed": EventKind.RUN_FAILED,
            "lost": EventKind.RUN_FAILED,
        }.get(status, EventKind.RUN_CANCELLED)
        if status == "lost" and reason is None:
            reason = "lost: the worker stopped sending heartbeats (killed or node lost); resume to rerun it"
        metrics = doc.get("metrics") if doc is not None and status == "success" else None
        self._events.emit(
            Event(
                kind,
                rid,
                self._experiment_id,
                duration_ms=doc.get("duration_ms") if doc is not None else None,
                metrics=dict(metrics) if isinstance(metrics, dict) else None,
                error=error,
                reason=reason,
            )
        )

    def _settle(self, keep: Set[str] = frozenset()) -> None:
        """The jobs left the queue: account for every run without a final record
        (except ``keep``: runs another launch is executing, unless this
        submission was cancelled); finished when none is left open."""
        if self._cancelled:
            for rid in sorted(self._open & keep):
                self._end(rid, "cancelled", None, reason="this submission was cancelled; "
                          "another launch is executing the run")
        for rid in sorted(self._open - keep):
            if self._state.get(rid) == "running":
                self._end(rid, "lost", None)
            else:
                self._end(rid, "cancelled", None, reason="its array task ended before running it "
                          "(scancel, time limit or a failed task; see the SLURM logs); resume to run it")
        if not self._open:
            self._finish()

    def _finish(self) -> None:
        if self._finished.is_set():
            return
        self._finished.set()
        for cb in self._on_finish:
            try:
                cb()
            except Exception:
                log.exception("finish hook failed (ignored)")

    # ------------------------------------------------------------ public API
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the submission has ended; True if so, False on timeout.

        Never hangs on runs that were skipped or had already ended: completion
        counts final records, and the queue running empty ends it too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            if self._poller is None or not self._poller.is_alive():
                self.poll()
                if self._finished.is_set():
                    break
            step = self._interval if deadline is None else min(self._interval, deadline - time.monotonic())
            if step <= 0:
                return False
            self._finished.wait(step)
        return True

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the submission and return its :class:`~metalab.analysis.Results`.

        Raises:
            ExecutionError: ``timeout`` seconds passed first.
        """
        if not self.wait(timeout):
            st = self.status
            raise ExecutionError(
                f"{st.pending + st.running} run(s) of {self._experiment_id!r} still pending or running "
                f"after {timeout} s; call result() again to keep waiting, or cancel()"
            )
        return submission_results(self._store, self._all_run_ids)

    def cancel(self) -> None:
        """``scancel`` every array of the submission (returns at once; use :meth:`wait`).

        Running workers get SIGTERM and record their run as ``cancelled``;
        queued tasks never start (their runs count as cancelled).
        """
        self._cancelled = True
        ids = self.job_ids
        if ids:
            proc = _run_cmd(["scancel", *ids])
            if proc.returncode != 0:
                log.warning("scancel failed (exit %s): %s", proc.returncode, proc.stderr.strip())

    def __enter__(self) -> SlurmRunHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            self.cancel()
        self.wait()

    def __repr__(self) -> str:
        st = self.status
        return (
            f"SlurmRunHandle({self._experiment_id!r}, jobs={self.job_ids}, done={st.done}/{st.total}, "
            f"running={st.running}, failed={st.failed}, lost={st.lost})"
        )


# ---------------------------------------------------------------- reconnect
def load_submission(path: str) -> dict[str, Any]:
    """Read a submission manifest.

    Raises:
        NotFoundError: the file is missing.  ExecutionError: it is not a
            metalab submission.
    """
    try:
        with open(path, "rb") as fh:
            doc = _json.loads(fh.read())
    except FileNotFoundError as exc:
        raise NotFoundError(f"submission manifest {path} does not exist") from exc
    if not isinstance(doc, dict) or doc.get("format") != SUBMISSION_FORMAT:
        raise ExecutionError(f"{path} is not a metalab SLURM submission manifest")
    return doc


def reconnect(
    store: Any,
    experiment_id: str | None = None,
    *,
    progress: bool = False,
    on_event: EventCallback | None = None,
) -> SlurmRunHandle:
    """A handle on the latest SLURM submission of an experiment, from any process.

    ``store`` is what was given to ``metalab.run`` (``None``, a path,
    locator, config or store: see :func:`metalab.store.make_store`).  ``experiment_id`` may be omitted when the store is scoped or
    holds exactly one experiment.

    Raises:
        NotFoundError: no experiment, or its latest submission was not a
            SLURM one.  ValidationError: several experiments and no
            ``experiment_id``.
    """
    from metalab.store import make_store

    if experiment_id is None:
        store = make_store(store)
        experiment_id = store.experiment_id
        if experiment_id is None:
            found = store.list_experiments()
            if len(found) != 1:
                raise ValidationError(
                    f"the store holds {len(found)} experiments ({', '.join(sorted(found)) or 'none'}); "
                    "pass experiment_id='name:version' to reconnect"
                )
            experiment_id = found[0]
    scoped = make_store(store, experiment_id=experiment_id)
    manifest = scoped.get_experiment_manifest(experiment_id)
    sub = (manifest or {}).get("submission")
    if not isinstance(sub, dict) or sub.get("kind") != "slurm":
        raise NotFoundError(
            f"the latest submission of {experiment_id!r} in this store was not made with "
            "SlurmExecutor; nothing to reconnect to"
        )
    sub_path = os.path.join(scoped.get_working_directory(), str(sub["path"]))
    doc = load_submission(sub_path)
    run_ids_all = manifest.get("run_ids") if manifest else None
    ranges = doc["pending"]
    if not isinstance(run_ids_all, list):  # rebuild from the shipped experiment
        path = os.path.join(os.path.dirname(sub_path), doc["experiment_file"])
        exp = _load_experiment(path, doc)[0]
        run_ids_all = [spec.run_id for spec in exp.iter_specs()]
    run_ids = [str(run_ids_all[i]) for start, stop in ranges for i in range(start, stop)]
    return SlurmRunHandle(
        scoped, doc, run_ids, progress=progress, on_event=on_event,
        all_run_ids=[str(rid) for rid in run_ids_all],
    )


def _placeholder_operation(params: Any) -> None:  # pragma: no cover - never called
    raise ExecutionError("placeholder operation of a rebuilt experiment")


def _load_experiment(path: str, doc: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """Rebuild the shipped experiment (with a placeholder operation) and its derived metrics."""
    from metalab.definition import Experiment

    with open(path, "rb") as fh:
        parts = pickle.loads(fh.read())
    derived = tuple(parts.pop("derived_metrics", ()) or ())
    placeholder: Any = _placeholder_operation
    exp = Experiment(operation=placeholder, **parts)
    # trust the submitter's context fingerprint: same run ids, no rehashing on every node
    exp.__dict__["context_fingerprint"] = doc["context_fingerprint"]
    return exp, derived
