"""The executor contract (metalab.testing.ExecutorContractTests) against every executor.

SLURM runs against a faked queue: ``sbatch``, ``squeue``, ``scancel`` and
``scontrol`` are answered by :class:`FakeSlurmQueue`, which runs each array
task as the real program (``python -m metalab.execution._slurm_task``, via
the rendered sbatch script) in a subprocess, one task at a time.  tests/slurm
runs the same executor on a real cluster.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalab.execution import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    SlurmExecutor,
    ThreadExecutor,
)
from metalab.testing import ExecutorContractTests

#: seconds a faked array task may run before the fake queue kills it
_TASK_TIMEOUT_S = 120
#: first job id the fake queue hands out
_FIRST_JOB_ID = 5000


class TestSerialExecutor(ExecutorContractTests):
    @pytest.fixture
    def executor(self) -> SerialExecutor:
        return SerialExecutor()


class TestThreadExecutor(ExecutorContractTests):
    @pytest.fixture
    def executor(self) -> ThreadExecutor:
        return ThreadExecutor(max_workers=2)


class TestProcessExecutor(ExecutorContractTests):
    @pytest.fixture
    def executor(self) -> Iterator[ProcessExecutor]:
        ex = ProcessExecutor(max_workers=2)
        yield ex
        ex.shutdown(wait=True)


class TestDaskExecutor(ExecutorContractTests):
    @pytest.fixture
    def executor(self, dask_client: Any) -> DaskExecutor:
        return DaskExecutor(dask_client)


class _Task:
    def __init__(self, job_id: str, index: int, script: str, offset: str) -> None:
        self.job_id, self.index, self.script, self.offset = job_id, index, script, offset
        self.state = "PENDING"
        self.proc: subprocess.Popen[bytes] | None = None


class FakeSlurmQueue:
    """Answers the SLURM commands metalab runs; executes array tasks one at a time."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._lock = threading.Lock()
        self._tasks: list[_Task] = []
        self._ids = itertools.count(_FIRST_JOB_ID)
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="fake-slurm", daemon=True)
        self._thread.start()

    def run_cmd(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        handler = {"sbatch": self._sbatch, "squeue": self._squeue, "scancel": self._scancel,
                   "scontrol": self._scontrol}[args[0]]
        out = handler(args[1:])
        return subprocess.CompletedProcess(args, 0, out, "")

    def _sbatch(self, args: list[str]) -> str:
        array = next(a for a in args if a.startswith("--array="))
        m = re.match(r"--array=0-(\d+)", array)
        assert m, array
        script, offset = [a for a in args if not a.startswith("--")][-2:]
        job_id = str(next(self._ids))
        with self._lock:
            self._tasks += [_Task(job_id, i, script, offset) for i in range(int(m.group(1)) + 1)]
        self._wake.set()
        return f"{job_id}\n"

    def _squeue(self, args: list[str]) -> str:
        ids = set(args[args.index("-j") + 1].split(","))
        with self._lock:
            return "".join(f"{t.job_id}_{t.index}|{t.state}\n" for t in self._tasks
                           if t.job_id in ids and t.state in ("PENDING", "RUNNING"))

    def _scancel(self, ids: list[str]) -> str:
        with self._lock:
            for t in self._tasks:
                if t.job_id in ids and t.state == "PENDING":
                    t.state = "CANCELLED"
                elif t.job_id in ids and t.state == "RUNNING" and t.proc is not None:
                    t.proc.terminate()
        return ""

    def _scontrol(self, args: list[str]) -> str:
        return "MaxArraySize = 1001\n"

    def _next(self) -> _Task | None:
        with self._lock:
            for t in self._tasks:
                if t.state == "PENDING":
                    t.state = "RUNNING"
                    return t
        return None

    def _loop(self) -> None:
        while not self._stop:
            task = self._next()
            if task is None:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            env = {**os.environ, "SLURM_ARRAY_JOB_ID": task.job_id, "SLURM_JOB_ID": task.job_id,
                   "SLURM_ARRAY_TASK_ID": str(task.index)}
            with open(self._log_dir / f"{task.job_id}_{task.index}.out", "wb") as out:
                with self._lock:
                    task.proc = subprocess.Popen(["bash", task.script, task.offset], env=env,
                                                 stdout=out, stderr=subprocess.STDOUT)
                try:
                    task.proc.wait(timeout=_TASK_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    task.proc.kill()
                    task.proc.wait()
            with self._lock:
                task.state = "COMPLETED"

    def close(self) -> None:
        self._stop = True
        with self._lock:
            procs = [t.proc for t in self._tasks if t.proc is not None and t.proc.poll() is None]
        for proc in procs:
            proc.kill()
            proc.wait()
        self._thread.join(timeout=5)


class TestFakedSlurmExecutor(ExecutorContractTests):
    CANCEL_RUNS = 4

    @pytest.fixture
    def executor(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmExecutor]:
        log_dir = tmp_path / "fake-slurm"
        log_dir.mkdir()
        queue = FakeSlurmQueue(log_dir)
        monkeypatch.setattr("metalab.execution._slurm_queue.run_cmd", queue.run_cmd)
        monkeypatch.setattr("metalab.execution._slurm.run_cmd", queue.run_cmd)
        try:
            yield SlurmExecutor(chunk_size=2, poll_interval=0.1)
        finally:
            queue.close()
