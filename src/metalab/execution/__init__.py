"""Running experiments.

``run()`` submits an experiment to an executor (serial by default; thread,
process, Dask and SLURM executors too) and returns a :class:`Handle`: a
:class:`RunHandle` (:class:`SlurmRunHandle` for SLURM, see :func:`reconnect`); operations record values through
:class:`Capture` and see :class:`Runtime`; :class:`Event` objects report
progress to callbacks.
"""

from metalab.execution._capture import Capture
from metalab.execution._claims import ClaimedElsewhereError
from metalab.execution._dask import DaskExecutor
from metalab.execution._events import Event, EventKind
from metalab.execution._executors import Executor, ProcessExecutor, SerialExecutor, ThreadExecutor
from metalab.execution._handle import Handle, RunHandle, RunStatus
from metalab.execution._runner import run
from metalab.execution._runtime import Runtime
from metalab.execution._slurm import (
    SlurmConfig,
    SlurmExecutor,
    SlurmRunHandle,
    reconnect,
    render_sbatch_script,
)
from metalab.execution._worker import execute_run

__all__ = [
    "Capture",
    "ClaimedElsewhereError",
    "DaskExecutor",
    "Event",
    "EventKind",
    "Executor",
    "Handle",
    "ProcessExecutor",
    "RunHandle",
    "RunStatus",
    "Runtime",
    "SerialExecutor",
    "SlurmConfig",
    "SlurmExecutor",
    "SlurmRunHandle",
    "ThreadExecutor",
    "execute_run",
    "reconnect",
    "render_sbatch_script",
    "run",
]
