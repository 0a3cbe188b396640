"""How a handle settles a run whose task was cancelled while it may have been executing.

An executor's future may end in StartUnknownError (Dask: a cancelled task
that may be running); the handle then reads the store.  A fake executor
hands back futures the test ends, and the test plays the worker (claims
with the task's owner token, runs the operation, writes the record).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

import dask_cancel_ops
import exec_ops

from metalab.definition import Experiment, grid, seeds
from metalab.execution import Executor, SerialExecutor, run
from metalab.execution._claims import new_owner
from metalab.execution._worker import Job, StartUnknownError, owner_with_token, run_job
from metalab.query import lost_after_seconds

#: seconds any wait of these tests may take
_WAIT_S = 30.0
#: the owner token of the (played) task
_TOKEN = "0123456789"


class _Pending(Executor):
    """Keeps every job; its futures end only when the test ends them."""

    name = "pending"

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.futures: dict[str, cf.Future[Any]] = {}

    def submit(self, job: Job) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        fut.set_running_or_notify_cancel()
        self.jobs[job.run_id] = job
        self.futures[job.run_id] = fut
        return fut

    def task_cancelled(self, run_id: str) -> None:
        """What DaskExecutor reports for a task cancelled while it may run."""
        self.futures[run_id].set_exception(StartUnknownError("cancelled", run_id, _TOKEN))


def _gated(root: Path) -> Experiment:
    (root / "started").mkdir(parents=True, exist_ok=True)
    return Experiment(name="su", version="1", context={"root": str(root)},
                      operation=dask_cancel_ops.gated, params=grid(x=[1]), seeds=seeds(0, 1))


def _submit(exp: Experiment, store: Path) -> tuple[Any, _Pending, str]:
    ex = _Pending()
    handle = run(exp, store=store, executor=ex)
    [run_id] = ex.jobs
    return handle, ex, run_id


def _claim_file(handle: Any, run_id: str) -> Path:
    return Path(handle.store.get_working_directory(), ".claims", f"{run_id}.claim")


def test_the_own_task_still_executing_is_waited_for_and_counted_as_its_record(tmp_path):
    handle, ex, run_id = _submit(_gated(tmp_path), tmp_path / "store")
    job = dataclasses.replace(ex.jobs[run_id], cancel_flag=None, on_started=None)
    worker = threading.Thread(target=run_job, args=(job, "pending", "w0", owner_with_token(_TOKEN)))
    worker.start()
    end = time.monotonic() + _WAIT_S
    while not (tmp_path / "started" / run_id).exists():
        assert time.monotonic() < end
        time.sleep(0.01)
    handle.cancel()
    ex.task_cancelled(run_id)
    time.sleep(3 * handle.ELSEWHERE_POLL_S)
    assert not handle.done and handle.status.running == 1, handle.status
    (tmp_path / "release").touch()
    worker.join(_WAIT_S)
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.success, status.cancelled, status.lost) == (1, 0, 0), status
    assert handle.store.get_run_record(run_id).status.value == "success"


def test_an_own_task_that_stopped_holding_its_claim_ends_lost(tmp_path):
    handle, ex, run_id = _submit(_gated(tmp_path), tmp_path / "store")
    assert handle.store.try_claim(run_id, owner_with_token(_TOKEN), lost_after_seconds())
    old = time.time() - 2 * lost_after_seconds()
    os.utime(_claim_file(handle, run_id), (old, old))  # no heartbeat for that long
    handle.cancel()
    ex.task_cancelled(run_id)
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.lost, status.cancelled, status.success) == (1, 0, 0), status


def test_a_live_claim_of_another_launch_ends_the_run_cancelled(tmp_path):
    handle, ex, run_id = _submit(_gated(tmp_path), tmp_path / "store")
    other = new_owner()
    assert handle.store.try_claim(run_id, other, lost_after_seconds())
    handle.cancel()
    ex.task_cancelled(run_id)
    assert handle.wait(timeout=_WAIT_S)
    assert handle.status.cancelled == 1, handle.status
    assert handle.store.claim_holder(run_id)[0] == other  # left to its launch


def test_an_earlier_attempts_record_is_not_taken_for_the_tasks(tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    exp = Experiment(name="su", version="1", context={"fail_flag": str(flag)},
                     operation=exec_ops.basic, params=grid(x=[2]), seeds=seeds(0, 1))
    store = tmp_path / "store"
    assert run(exp, store=store, executor=SerialExecutor()).status.failed == 1
    handle, ex, run_id = _submit(exp, store)
    assert ex.jobs[run_id].attempt == 2
    handle.cancel()
    ex.task_cancelled(run_id)  # no claim, and only attempt 1's record: not started
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.cancelled, status.failed) == (1, 0), status
    assert handle.store.get_run_record(run_id).attempt == 1


def test_a_task_that_started_but_left_no_final_record_ends_lost(tmp_path):
    """Its running record of this attempt shows it started; its claim is gone (the final
    record could not be written): lost, never "cancelled before it started"."""
    from metalab.model import RunRecord, Status

    handle, ex, run_id = _submit(_gated(tmp_path), tmp_path / "store")
    job = ex.jobs[run_id]
    handle.store.put_run_record(RunRecord(run_id=run_id, experiment_id="su:1",
                                          status=Status.RUNNING, attempt=job.attempt))
    handle.cancel()
    ex.task_cancelled(run_id)
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.lost, status.cancelled, status.success) == (1, 0, 0), status
