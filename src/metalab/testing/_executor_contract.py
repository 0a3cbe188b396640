"""A contract test suite every :class:`~metalab.execution.Executor` must pass.

Use it from an executor's test module::

    from metalab.testing import ExecutorContractTests

    class TestMyExecutor(ExecutorContractTests):
        @pytest.fixture
        def executor(self):
            return MyExecutor(...)

The cases submit small experiments of :func:`contract_op` (importable by
reference, so out-of-process executors can ship it) to a FileStore under
pytest's ``tmp_path`` (override the ``store_root`` fixture to use another
folder, e.g. one a cluster shares) and check what the handle says against
what the store holds: every run of a submission ends in the store with its
status, failures are recorded with their error, a resume skips the runs that
succeeded, a cancelled submission still ends with every run accounted for,
``result()`` returns exactly the submission's runs, and the handle's counts
add up.  The handle must be a :class:`~metalab.execution.Handle`.

``executor`` may be the same object for several submissions of one test
(executors may be used again after they shut down).  Class attributes tune
the cases: :attr:`~ExecutorContractTests.TIMEOUT_S` bounds each wait,
:attr:`~ExecutorContractTests.CANCEL_RUNS` is the size of the cancelled
submission (make it larger than the executor's parallelism, so that some
runs are still queued when it is cancelled).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from metalab._internal._json import loads
from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import Executor, Handle, RunStatus, run

__all__ = ["ExecutorContractTests", "contract_op"]

#: longest a blocking contract run waits for its release file before it ends anyway (seconds)
BLOCK_MAX_S = 60.0
#: seconds between two looks of a blocking contract run at its release file and cancel flag
_BLOCK_POLL_S = 0.02
#: file in the context's ``root`` that lets blocking contract runs finish
RELEASE_FILE = "release"
_FINAL = ("success", "failed", "cancelled")


@operation
def contract_op(context: Any, params: Any, runtime: Any, capture: Any) -> None:
    """The operation of the contract experiments.

    Fails (``ValueError``) when the file ``fail-{x}`` exists in
    ``context["root"]``; with ``context["block"]`` it first waits until the
    file :data:`RELEASE_FILE` exists there, the submission is cancelled
    (``RunCancelledError``), or :data:`BLOCK_MAX_S` passed.  Records the
    metric ``y = 2 * x``.
    """
    root = str(context["root"])
    x = params["x"]
    if context.get("block"):
        deadline = time.monotonic() + BLOCK_MAX_S
        while not os.path.exists(os.path.join(root, RELEASE_FILE)) and time.monotonic() < deadline:
            runtime.check_cancelled()
            time.sleep(_BLOCK_POLL_S)
    if os.path.exists(os.path.join(root, f"fail-{x}")):
        raise ValueError(f"contract failure of x={x}")
    capture.metric("y", 2 * x)


def _records(store_root: Path, experiment_id: str) -> dict[str, dict[str, Any]]:
    """The run records of the experiment, read from the files (not through the store)."""
    folder = store_root / experiment_id.replace(":", "_") / "runs"
    out: dict[str, dict[str, Any]] = {}
    for path in folder.glob("*.json"):
        doc = loads(path.read_bytes())
        out[str(doc["run_id"])] = doc
    return out


def _check_counts(status: RunStatus) -> None:
    """The identities every finished submission's counts satisfy."""
    assert status.finished, status
    assert status.done == status.total, status
    assert status.done == (
        status.success + status.failed + status.cancelled + status.skipped + status.lost
    ), status
    assert (status.pending, status.running, status.elsewhere) == (0, 0, 0), status


class ExecutorContractTests:
    """The cases; subclasses provide the ``executor`` fixture (see the module docstring)."""

    #: seconds any one wait for a submission may take
    TIMEOUT_S = 120.0
    #: runs of the cancelled submission
    CANCEL_RUNS = 6

    @pytest.fixture
    def executor(self) -> Executor:
        raise NotImplementedError("an ExecutorContractTests subclass must provide an executor fixture")

    @pytest.fixture
    def store_root(self, tmp_path: Path) -> Path:
        return tmp_path / "store"

    @pytest.fixture
    def flags(self, tmp_path: Path) -> Path:
        """The folder :func:`contract_op` looks for its fail and release files in."""
        folder = tmp_path / "flags"
        folder.mkdir()
        return folder

    def experiment(self, flags: Path, xs: Any, *, block: bool = False) -> Experiment:
        context: dict[str, Any] = {"root": str(flags)}
        if block:
            context["block"] = True
        return Experiment(
            name="contract", version="1", context=context, operation=contract_op,
            params=grid(x=list(xs)), seeds=seeds(0, 1),
        )

    def submit(self, experiment: Experiment, store_root: Path, executor: Executor, **kw: Any) -> Handle:
        handle = run(experiment, store=str(store_root), executor=executor, **kw)
        assert isinstance(handle, Handle)
        return handle

    def finish(self, handle: Handle) -> RunStatus:
        assert handle.wait(timeout=self.TIMEOUT_S), f"the submission did not end: {handle.status}"
        assert handle.done
        status = handle.status
        _check_counts(status)
        return status

    # ---------------------------------------------------------------- cases
    def test_every_run_of_a_batch_ends_in_the_store(
        self, executor: Executor, store_root: Path, flags: Path
    ) -> None:
        exp = self.experiment(flags, range(5))
        handle = self.submit(exp, store_root, executor)
        status = self.finish(handle)
        assert (status.total, status.success) == (5, 5), status
        records = _records(store_root, exp.experiment_id)
        assert sorted(records) == sorted(spec.run_id for spec in exp.iter_specs())
        assert {doc["status"] for doc in records.values()} == {"success"}
        assert sorted(doc["metrics"]["y"] for doc in records.values()) == [0, 2, 4, 6, 8]
        assert {doc["provenance"]["executor"] for doc in records.values()} == {executor.name}

    def test_failures_are_recorded(self, executor: Executor, store_root: Path, flags: Path) -> None:
        for x in (1, 3):
            (flags / f"fail-{x}").touch()
        exp = self.experiment(flags, range(4))
        status = self.finish(self.submit(exp, store_root, executor))
        assert (status.success, status.failed) == (2, 2), status
        records = _records(store_root, exp.experiment_id)
        failed = {doc["params"]["x"]: doc for doc in records.values() if doc["status"] == "failed"}
        assert sorted(failed) == [1, 3]
        for x, doc in failed.items():
            assert doc["error"]["type"] == "ValueError"
            assert f"x={x}" in doc["error"]["message"]

    def test_resume_skips_succeeded_runs(self, executor: Executor, store_root: Path, flags: Path) -> None:
        (flags / "fail-2").touch()
        exp = self.experiment(flags, range(4))
        first = self.finish(self.submit(exp, store_root, executor))
        assert (first.success, first.failed) == (3, 1), first
        before = _records(store_root, exp.experiment_id)
        (flags / "fail-2").unlink()
        again = self.finish(self.submit(exp, store_root, executor))
        assert (again.skipped, again.success, again.failed) == (3, 1, 0), again
        after = _records(store_root, exp.experiment_id)
        assert {doc["status"] for doc in after.values()} == {"success"}
        for rid, doc in after.items():
            if before[rid]["status"] == "success":
                assert doc == before[rid], "a run that had succeeded was executed again"
            else:
                assert doc["attempt"] == before[rid]["attempt"] + 1

    def test_cancel_accounts_for_every_run(self, executor: Executor, store_root: Path, flags: Path) -> None:
        exp = self.experiment(flags, range(self.CANCEL_RUNS), block=not executor.runs_in_caller)
        if executor.runs_in_caller:
            (flags / RELEASE_FILE).touch()  # run() returns only when every run has ended
        handle = self.submit(exp, store_root, executor)
        handle.cancel()
        assert handle.cancelled
        (flags / RELEASE_FILE).touch()  # runs an executor cannot interrupt may finish
        status = self.finish(handle)
        if not executor.runs_in_caller:
            assert status.cancelled >= 1, status
            assert status.success < status.total, status
        records = _records(store_root, exp.experiment_id)
        assert all(doc["status"] in _FINAL for doc in records.values()), records
        stored_success = sum(doc["status"] == "success" for doc in records.values())
        assert stored_success == status.success, (status, records)

    def test_result_returns_exactly_the_runs_of_the_submission(
        self, executor: Executor, store_root: Path, flags: Path
    ) -> None:
        earlier = self.experiment(flags, [1, 2, 3])
        self.finish(self.submit(earlier, store_root, executor))
        exp = self.experiment(flags, [3, 4])
        handle = self.submit(exp, store_root, executor)
        results = handle.result(timeout=self.TIMEOUT_S)
        assert sorted(results.run_ids) == sorted(spec.run_id for spec in exp.iter_specs())
        assert sorted(r.params["x"] for r in results) == [3, 4]
        status = self.finish(handle)
        assert (status.total, status.skipped, status.success) == (2, 1, 1), status

    def test_handle_status_counts_add_up(self, executor: Executor, store_root: Path, flags: Path) -> None:
        (flags / "fail-0").touch()
        exp = self.experiment(flags, range(3))
        with self.submit(exp, store_root, executor) as handle:
            seen = handle.status
            assert seen.total == 3
            assert seen.done + seen.running + seen.pending + seen.elsewhere == seen.total, seen
        status = self.finish(handle)
        assert (status.total, status.success, status.failed, status.skipped) == (3, 2, 1, 0), status
        assert handle.experiment_id == exp.experiment_id
        assert handle.store.experiment_id == exp.experiment_id
