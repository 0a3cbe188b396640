"""Layer 5: running experiments.

``run()`` submits an experiment to an executor (serial by default) and
returns a :class:`RunHandle`; operations record values through
:class:`Capture` and see :class:`Runtime`; :class:`Event` objects report
progress to callbacks.
"""

from metalab.execution._capture import Capture
from metalab.execution._events import Event, EventKind
from metalab.execution._executors import Executor, ProcessExecutor, SerialExecutor, ThreadExecutor
from metalab.execution._handle import RunHandle, RunStatus
from metalab.execution._runner import run
from metalab.execution._runtime import Runtime
from metalab.execution._worker import execute_run

__all__ = [
    "Capture",
    "Event",
    "EventKind",
    "Executor",
    "ProcessExecutor",
    "RunHandle",
    "RunStatus",
    "Runtime",
    "SerialExecutor",
    "ThreadExecutor",
    "execute_run",
    "run",
]
