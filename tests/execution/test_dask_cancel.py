"""Cancelling a Dask submission: the handle reports each run as what the store holds.

A Dask task that is executing cannot be stopped; its future reads
"cancelled" on the client at once.  These tests hold the task at chosen
points (the operation itself, after the claim, before the claim) and check
that the handle waits for it or reports it as not started, matching the
records, and that a task claiming its run after the cancel does not run it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask_cancel_ops
import pytest

from metalab.definition import Experiment, grid, seeds
from metalab.execution import DaskExecutor, EventKind, run
from metalab.execution._worker import Job, NotStartedError
from metalab.store import FileStore

#: seconds a test waits for something a worker does
_WAIT_S = 60.0


def _folders(tmp_path: Path) -> Path:
    root = tmp_path / "flags"
    for name in ("started", "at-gate", "checked"):
        (root / name).mkdir(parents=True)
    return root


def _experiment(root: Path, xs: list[int]) -> Experiment:
    return Experiment(name="dc", version="1", context={"root": str(root)},
                      operation=dask_cancel_ops.gated, params=grid(x=xs), seeds=seeds(0, 1))


def _records(store: Path) -> dict[str, str]:
    """run id -> status, read from the record files."""
    docs = [json.loads(p.read_text()) for p in (store / "dc_1" / "runs").glob("*.json")]
    return {d["run_id"]: d["status"] for d in docs}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _wait_until(cond: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + _WAIT_S
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_runs_executing_at_cancel_are_reported_as_what_they_wrote(tmp_path, dask_client):
    root = _folders(tmp_path)
    store = tmp_path / "store"
    events = []
    handle = run(_experiment(root, [1, 2, 3]), store=store, executor=DaskExecutor(dask_client),
                 on_event=events.append)
    # two workers of one thread each: two runs execute, the third is queued
    _wait_until(lambda: len(_names(root / "started")) == 2, "two runs to start")
    handle.cancel()
    _wait_until(lambda: handle.status.cancelled >= 1, "the queued run to be cancelled")
    status = handle.status
    assert not handle.done and (status.success, status.running, status.pending) == (0, 2, 0), status
    (root / "release").touch()
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.success, status.cancelled, status.failed, status.lost) == (2, 1, 0, 0), status
    records = _records(store)
    assert sorted(records) == _names(root / "started")
    assert set(records.values()) == {"success"}
    finished = sorted(e.run_id for e in events if e.kind is EventKind.RUN_FINISHED)
    assert finished == sorted(records)
    assert sum(e.kind is EventKind.RUN_CANCELLED for e in events) == 1


@pytest.fixture
def patched(dask_client, tmp_path):
    """Install :func:`dask_cancel_ops.patch_worker` in the workers (call it), undo afterwards."""
    root = _folders(tmp_path)

    def install(before_claim: bool) -> Path:
        dask_client.run(dask_cancel_ops.patch_worker, str(root), before_claim=before_claim)
        return root

    yield install
    dask_client.run(dask_cancel_ops.unpatch_worker)


def _one_run_at_the_gate(root: Path, store: Path, client: object) -> tuple[Any, str]:
    """Submit one run and wait until its task waits at the patched gate: (handle, run id)."""
    handle = run(_experiment(root, [1]), store=store, executor=DaskExecutor(client))
    _wait_until(lambda: bool(_names(root / "at-gate")), "the task to reach the gate")
    [run_id] = _names(root / "at-gate")
    return handle, run_id


def test_a_cancel_between_claim_and_start_keeps_the_run_from_starting(tmp_path, dask_client, patched):
    root = patched(before_claim=False)
    store = tmp_path / "store"
    handle, run_id = _one_run_at_the_gate(root, store, dask_client)
    assert FileStore(store, "dc:1").claim_holder(run_id) is not None
    handle.cancel()
    time.sleep(1.0)  # several looks of the handle: the claim of its own task is waited for
    assert not handle.done and handle.status.running == 1, handle.status
    (root / "go").touch()
    assert handle.wait(timeout=_WAIT_S)
    status = handle.status
    assert (status.success, status.cancelled) == (0, 1), status
    assert _names(root / "checked") == [f"{run_id}.not-started"]
    assert _names(root / "started") == [] and _records(store) == {}
    assert FileStore(store, "dc:1").claim_holder(run_id) is None


def test_a_task_claiming_after_the_cancel_does_not_run(tmp_path, dask_client, patched):
    root = patched(before_claim=True)
    store = tmp_path / "store"
    handle, run_id = _one_run_at_the_gate(root, store, dask_client)
    handle.cancel()
    # no claim and no record: reported as not started while the task still executes
    assert handle.wait(timeout=_WAIT_S)
    assert handle.status.cancelled == 1, handle.status
    (root / "go").touch()
    _wait_until(lambda: bool(_names(root / "checked")), "the task to look at the cancel signal")
    assert _names(root / "checked") == [f"{run_id}.not-started"]
    _wait_until(lambda: FileStore(store, "dc:1").claim_holder(run_id) is None, "the claim's release")
    assert _names(root / "started") == [] and _records(store) == {}


def test_a_cancel_signal_set_after_the_claim_releases_it_unrun(tmp_path):
    store = FileStore(tmp_path / "store", "dc:1")
    spec = next(iter(_experiment(tmp_path, [1]).iter_specs()))
    flag = threading.Event()
    flag.set()
    job = Job(spec=spec, operation=dask_cancel_ops.gated, context={"root": str(tmp_path)},
              store=store, start_check=flag)
    with pytest.raises(NotStartedError, match="cancelled before it started"):
        job.run("thread", "t-0")
    assert store.claim_holder(spec.run_id) is None
    assert store.get_run_record(spec.run_id) is None
