"""``handle.result()`` on a PostgresStore holds exactly the runs of the submission,
whatever the executor (worker processes flush their index changes on their own
schedule: the read must not see a partial, stale index)."""

from __future__ import annotations

import distributed
import pg_ops
import pytest

from metalab.definition import Experiment, grid, seeds
from metalab.execution import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    ThreadExecutor,
    run,
)
from metalab.store import PostgresStoreConfig


def _experiment(name: str, n: int) -> Experiment:
    return Experiment(name=name, version="1", context={}, operation=pg_ops.score,
                      params=grid(x=list(range(n))), seeds=seeds(0, 1))


def _check_sweeps(collection: PostgresStoreConfig, executor_of, prefix: str,
                  sweeps: int = 5, n: int = 20) -> None:
    for i in range(sweeps):
        handle = run(_experiment(f"{prefix}{i}", n), store=collection, executor=executor_of())
        results = handle.result(timeout=120)
        assert handle.status.success == n
        got = sorted(results.run_ids)
        assert len(got) == n, f"sweep {i}: result() holds {len(got)} of {n} runs"
        assert set(results.to_dataframe()["y"]) == {2 * x for x in range(n)}
        store = collection.scoped(f"{prefix}{i}:1").connect()
        try:
            assert sorted(d["run_id"] for d in store.file_store.iter_run_documents()) == got
        finally:
            store.close()


def test_result_is_complete_with_process_executor(collection: PostgresStoreConfig) -> None:
    _check_sweeps(collection, lambda: ProcessExecutor(max_workers=2), "proc")


@pytest.mark.parametrize("executor_of", [lambda: ThreadExecutor(max_workers=4), SerialExecutor],
                         ids=["thread", "serial"])
def test_result_is_complete_in_process(collection: PostgresStoreConfig, executor_of) -> None:
    _check_sweeps(collection, executor_of, "inproc", sweeps=3)


def test_result_is_complete_with_dask_worker_processes(collection: PostgresStoreConfig) -> None:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        _check_sweeps(collection, lambda: DaskExecutor(client), "dask", sweeps=3)
    finally:
        client.close()
        cluster.close()
