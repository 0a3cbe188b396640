"""Live metric series through a PostgresStore: read from its files while the run goes on."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator

import live_ops
import psycopg
import pytest
from psycopg import sql

import metalab
from metalab.analysis import load_results
from metalab.execution import ThreadExecutor, run
from metalab.store import PostgresStoreConfig

WAIT_S = 30.0


@pytest.fixture
def pg_config(pg_url: str, tmp_path) -> Iterator[PostgresStoreConfig]:
    schema = f"t_{secrets.token_hex(6)}"
    yield PostgresStoreConfig(connection_string=pg_url, file_root=str(tmp_path / "files"),
                              schema=schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_a_running_runs_steps_are_read_through_a_postgres_store(pg_config):
    live_ops.REACHED.clear()
    live_ops.RELEASE.clear()
    exp = metalab.Experiment(name="live", version="1", context={},
                             operation=live_ops.steps_then_event,
                             params=metalab.grid(x=[1]), seeds=metalab.seeds(0))
    handle = run(exp, store=pg_config, executor=ThreadExecutor(1))
    scoped = pg_config.scoped("live:1")
    points: list = []
    try:
        assert live_ops.REACHED.wait(WAIT_S)
        end = time.monotonic() + WAIT_S
        while len(points) < 3 and time.monotonic() < end:
            for run_ in load_results(scoped):
                if run_.status.value == "running" and "loss" in run_.live_series():
                    points = run_.metric_series("loss")
            time.sleep(0.05)
        assert [s for s, _ in points] == [0, 1, 2]
        assert points[1][1] == math.inf and math.isnan(points[2][1])
    finally:
        live_ops.RELEASE.set()
    handle.wait(timeout=WAIT_S)
    (done,) = list(load_results(scoped))
    assert done.status.value == "success"
    assert [s for s, _ in done.metric_series("loss")] == [0, 1, 2, 3]
    handle.store.close()
