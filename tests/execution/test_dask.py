"""DaskExecutor against a real LocalCluster (processes, two workers)."""

from __future__ import annotations

import json

import exec_ops
import pytest

import metalab
from metalab.definition import Experiment, grid, seeds
from metalab.execution import DaskExecutor, EventKind, run


@pytest.fixture
def client(dask_client):
    return dask_client


def make_exp(root, op=exec_ops.basic, xs=(1, 2, 3)):
    return Experiment(name="dk", version="1", context={"root": str(root)}, operation=op,
                      params=grid(x=list(xs)), seeds=seeds(0, 2))


def test_dask_runs_every_run_with_local_run_ids(tmp_path, client):
    events = []
    handle = run(make_exp(tmp_path), store=tmp_path / "store", executor=DaskExecutor(client),
                 on_event=events.append, progress=True)
    results = handle.result(timeout=60)
    assert handle.status.success == 6 and len(results) == 6
    local = run(make_exp(tmp_path), store=tmp_path / "local").result()
    assert sorted(results.run_ids) == sorted(local.run_ids)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "store" / "dk_1" / "runs").glob("*.json")]
    assert {r["provenance"]["executor"] for r in recs} == {"dask"}
    assert sorted(r["metrics"]["y"] for r in recs) == [2, 2, 4, 4, 6, 6]
    assert sum(e.kind is EventKind.RUN_FINISHED for e in events) == 6
    assert client.status != "closed"  # a given client is never closed by metalab


def test_dask_failures_and_resume(tmp_path, client):
    handle = run(make_exp(tmp_path, op=exec_ops.failing), store=tmp_path / "s",
                 executor=DaskExecutor(client))
    handle.wait(timeout=60)
    assert handle.status.failed == 6
    again = run(make_exp(tmp_path), store=tmp_path / "s2", executor=DaskExecutor(client.scheduler.address))
    again.wait(timeout=60)
    assert again.status.success == 6
    skip = run(make_exp(tmp_path), store=tmp_path / "s2", executor=DaskExecutor(client))
    assert skip.wait(timeout=30) and skip.status.skipped == 6


def test_dask_executor_validates_its_argument():
    with pytest.raises(metalab.ValidationError, match="Client"):
        DaskExecutor(42)
