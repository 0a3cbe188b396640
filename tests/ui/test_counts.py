"""The experiments page's counts and last activity: exact on every store.

``Store.status_overview`` (what the page asks, one pass of the index) must
give the counts a reader sees (a running run with a stale heartbeat is
``lost``), how many planned runs have a record (a run recorded but not
planned does not make a planned one started; a deleted run is not started
again) and the latest start / finish the run files hold; on a FileStore with
its catalog, on one whose catalog cannot answer (read-only: it reads the
files) and on a PostgresStore.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metalab.model import RunRecord, Status
from metalab.store import FileStore, FileStoreConfig, Store
from metalab.ui._views import SUMMARY_TTL_S

EXP = "counts:1"
#: the manifest's planned runs (the last two get no record that stays)
PLANNED = [f"{i:016x}" for i in range(1, 7)]
#: a run recorded but not in the manifest
UNPLANNED = "ffff000000000001"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _record(run_id: str, status: Status, start: datetime, **kw: Any) -> RunRecord:
    return RunRecord(run_id=run_id, experiment_id=EXP, status=status, started_at=start, **kw)


def _fill(collection: Store) -> None:
    """Planned: success, failed, running (live), running (heartbeat stale: lost), a run
    deleted after it finished, one never started; plus one success not planned (written
    through the experiment's store, as a sweep writes them)."""
    from metalab.store import make_store

    with make_store(collection, experiment_id=EXP) as store:
        _fill_experiment(store)


def _fill_experiment(store: Store) -> None:
    now = datetime.now(UTC)
    store.put_experiment_manifest(EXP, {"experiment_id": EXP, "run_ids": PLANNED,
                                        "total_runs": len(PLANNED)})
    done = {"finished_at": T0 + timedelta(minutes=9), "duration_ms": 1.0}
    store.put_run_record(_record(PLANNED[0], Status.SUCCESS, T0, **done))
    store.put_run_record(_record(PLANNED[1], Status.FAILED, T0 + timedelta(minutes=1),
                                 finished_at=T0 + timedelta(minutes=2)))
    store.put_run_record(_record(PLANNED[2], Status.RUNNING, now - timedelta(seconds=5),
                                 heartbeat_at=now))
    store.put_run_record(_record(PLANNED[3], Status.RUNNING, now - timedelta(days=2),
                                 heartbeat_at=now - timedelta(days=1)))
    store.put_run_record(_record(PLANNED[4], Status.SUCCESS, now,
                                 finished_at=now + timedelta(hours=1)))
    store.put_run_record(_record(UNPLANNED, Status.SUCCESS, T0, **done))
    store.query_runs(EXP, None, limit=1)  # (an index brought up to date before the delete)
    store.delete_run(PLANNED[4])  # (as `metalab runs rm` does)


def _latest(store: Store, key: str) -> str:
    """The latest ``key`` time among the run files (as they hold it)."""
    return max(str(d[key]) for d in store.iter_run_documents(EXP) if d.get(key))


def _reads_files(store: Store) -> bool:
    return isinstance(store, FileStore) and store.read_only


def _writer(store: Store) -> Store:
    """The experiment's store, writable (a read-only FileStore's writer beside it)."""
    from metalab.store import make_store

    if _reads_files(store):
        return FileStore(FileStoreConfig(root=store.config.root, experiment_id=EXP))
    return make_store(store, experiment_id=EXP)


@pytest.fixture(params=["catalog", "files", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    """A store of :func:`_fill`: a FileStore answering from its catalog, a read-only one
    (its catalog never refreshed: it reads the files) and a PostgresStore."""
    if request.param == "postgres":
        from metalab.store import PostgresStore, PostgresStoreConfig

        url = request.getfixturevalue("pg_url")
        config = PostgresStoreConfig(connection_string=url, file_root=str(tmp_path),
                                     schema=f"uicounts_{secrets.token_hex(5)}")
        with PostgresStore(config) as pg:
            _fill(pg)
            assert pg._query_index.status_overview(EXP, None) is not None  # (the index)
            yield pg
        return
    root = str(tmp_path / "experiments")
    with FileStore(FileStoreConfig(root=root)) as fs:
        _fill(fs)
    config = FileStoreConfig(root=root, read_only=request.param == "files")
    with FileStore(config) as fs:
        answered = fs._query_index.status_overview(EXP, None) is not None
        assert answered == (request.param == "catalog")
        yield fs


def test_overview_counts_planned_runs_and_times_exactly(store: Store) -> None:
    got = store.status_overview(EXP, planned=PLANNED)
    assert got["counts"] == {"success": 2, "failed": 1, "running": 1, "lost": 1}
    assert got["counts"] == store.status_counts(EXP)
    assert got["planned_recorded"] == 4  # (not the deleted run, not the unplanned one)
    assert got["last_started_at"] == _latest(store, "started_at")
    assert got["last_finished_at"] == _latest(store, "finished_at")
    index_answer = store._query_index.status_overview(EXP, frozenset(PLANNED))
    assert index_answer == (None if _reads_files(store) else got)
    assert store.status_overview(EXP)["planned_recorded"] is None
    assert store.status_overview(EXP, planned=frozenset())["planned_recorded"] == 0


def test_experiments_page_counts_not_started_and_last_activity(store: Store) -> None:
    from starlette.testclient import TestClient

    from metalab.ui import create_app

    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        exp = client.get(f"/api/experiments/{EXP}").json()
        assert exp["counts"] == {"running": 1, "lost": 1, "failed": 1, "cancelled": 0,
                                 "success": 2, "not_started": 2}
        assert exp["total"] == 7 and exp["finished"] == 3
        assert exp["last_activity"] == max(_latest(store, "started_at"),
                                           _latest(store, "finished_at"))
        with _writer(store) as writer:
            # a run of the plan deleted while the page polls: not started again
            writer.delete_run(PLANNED[0])
            time.sleep(SUMMARY_TTL_S + 0.1)
            exp = client.get(f"/api/experiments/{EXP}").json()
            assert exp["counts"]["not_started"] == 3 and exp["counts"]["success"] == 1
            # ... and recorded again: started
            writer.put_run_record(_record(PLANNED[0], Status.SUCCESS, T0))
            time.sleep(SUMMARY_TTL_S + 0.1)
            exp = client.get(f"/api/experiments/{EXP}").json()
            assert exp["counts"]["not_started"] == 2 and exp["counts"]["success"] == 2
            # a new manifest planning one more run (the unplanned one among them)
            writer.put_experiment_manifest(EXP, {"experiment_id": EXP, "total_runs": 8,
                                                 "run_ids": [*PLANNED, UNPLANNED, "f" * 16]})
            time.sleep(SUMMARY_TTL_S + 0.1)
        exp = client.get(f"/api/experiments/{EXP}").json()
        assert exp["counts"]["not_started"] == 3 and exp["total"] == 8
