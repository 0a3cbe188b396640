"""SLURM submission options (:class:`SlurmConfig`) and the sbatch script they render to."""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from metalab._errors import ValidationError

__all__ = ["SlurmConfig", "render_sbatch_script"]

_RESERVED_SBATCH = frozenset(
    {"array", "output", "error", "job-name", "J", "o", "e", "a", "parsable", "wait", "W", "chdir", "D"}
)
_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


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

