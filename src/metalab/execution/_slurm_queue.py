"""The SLURM client commands metalab runs: ``sbatch``, ``scancel``, ``squeue``, ``scontrol``.

Every command has a timeout; a missing command raises
:class:`~metalab.ExecutionError` naming it.  Queue reads return None when the
queue cannot be read (the caller polls again).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Sequence

from metalab._errors import ExecutionError

__all__ = ["QUEUED_STATES", "cluster_max_array_size", "queue_counts", "run_cmd", "scancel"]

log = logging.getLogger("metalab.execution")

#: seconds a SLURM command (sbatch, scancel) may take before it is killed
_CMD_TIMEOUT_S = 60.0
#: seconds ``scontrol show config`` and ``squeue`` may take (the poll retries)
_QUERY_TIMEOUT_S = 30
#: SLURM's own default ``MaxArraySize``, assumed when the cluster's cannot be read
_DEFAULT_MAX_ARRAY_SIZE = 1001
#: ``squeue`` states of a task that has not started (every other state counts as running)
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED"})


def run_cmd(args: list[str], timeout: float = _CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
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
        proc = run_cmd(["scontrol", "show", "config"], timeout=_QUERY_TIMEOUT_S)
    except (ExecutionError, subprocess.SubprocessError, OSError):
        return _DEFAULT_MAX_ARRAY_SIZE
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    return int(m.group(1)) if m else _DEFAULT_MAX_ARRAY_SIZE



def scancel(job_ids: Sequence[str]) -> None:
    """``scancel`` the jobs; a refusal is logged (the jobs may have ended already).

    Raises:
        ExecutionError: ``scancel`` is not on PATH.  subprocess.TimeoutExpired:
            it took longer than its timeout.
    """
    if not job_ids:
        return
    proc = run_cmd(["scancel", *job_ids])
    if proc.returncode != 0:
        log.warning("scancel failed (exit %s): %s", proc.returncode, proc.stderr.strip())


def queue_counts(job_ids: Sequence[str]) -> dict[str, int] | None:
    """Array tasks of ``job_ids`` still ``pending`` / ``running`` in ``squeue`` (None: unreadable)."""
    if not job_ids:
        return {"pending": 0, "running": 0}
    try:
        proc = run_cmd(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T"], timeout=_QUERY_TIMEOUT_S)
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
        if state in QUEUED_STATES:
            out["pending"] += 1
        elif state:
            out["running"] += 1
    return out
