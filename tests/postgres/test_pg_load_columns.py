"""load_results from the PostgreSQL index: columns from SQL, records only when needed.

Every test compares against the same runs loaded from the FileStore (the
source of truth): what a user sees must not depend on the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from metalab import load_results
from metalab.analysis import Results
from metalab.model import ErrorInfo, RunRecord, Status
from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.testing import make_record

EXP = "exp:1"


def _records() -> list[RunRecord]:
    # "now" when the records are written: a heartbeat taken at import time would read
    # as lost once the suite has run for longer than the lost limit before this test
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(23):
        params: dict[str, Any] = {"lr": [0.1, 0.01, 0.001][i % 3], "width": 32 * (1 + i % 2),
                                  "opt": "adam" if i % 2 else "sgd", "flag": i % 4 == 0}
        metrics: dict[str, Any] = {"loss": 1.0 / (i + 1), "epochs": i, "status": i}
        if i % 5 == 0:
            params["extra"] = {"nested": [1, 2, i]}
            metrics["rare"] = None if i == 5 else i * 0.5
        if i == 7:
            params = {}
        status = Status.SUCCESS
        kw: dict[str, Any] = {}
        if i % 6 == 1:
            status = Status.FAILED
            kw["error"] = ErrorInfo(type="ValueError", message=f"bad {i}", traceback="tb")
        if i == 9:  # a worker that died long ago: shown as lost
            status, kw["heartbeat_at"], kw["finished_at"] = Status.RUNNING, now - timedelta(days=2), None
        if i == 10:  # still alive
            status, kw["heartbeat_at"], kw["finished_at"] = Status.RUNNING, now, None
        start = (now - timedelta(days=1) + timedelta(seconds=i * 7 % 23)) if i != 11 else None
        out.append(make_record(
            f"r{i:03d}", EXP, status=status, params=params, metrics=metrics,
            tags=("grid", f"t{i % 3}"), seed={"root_seed": 7, "replicate_index": i % 3},
            started_at=start, notes=f"note {i}", series=("curve",) if i == 3 else (), **kw,
        ))
    return out


@pytest.fixture
def stores(make_store: Any, file_root: Path) -> tuple[PostgresStore, FileStoreConfig]:
    pg = make_store(EXP)
    for rec in _records():
        pg.put_run_record(rec)
    pg.put_artifact("r002", "weights", b"\x00\x01", kind="file", format="bin")
    pg.put_run_record(pg.get_run_record("r002").replace(  # type: ignore[union-attr]
        artifacts=tuple(pg.list_artifacts("r002"))))
    pg.append_log("r004", "run", "hello\n")
    pg.put_data("r003", "curve", {"kind": "series", "data": {"step": [0, 1], "value": [1.0, 0.5]}})
    pg.put_derived("r001", {"auc": 0.9})
    pg.put_derived("r012", {"auc": 0.7, "gap": 1})
    pg.flush()
    assert not pg.index_is_behind()
    return pg, FileStoreConfig(root=str(file_root), experiment_id=EXP)


class _Counter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        original = PostgresStore.read_run_documents

        def counted(store: PostgresStore, keys: list[tuple[str, str]]) -> Any:
            self.calls.append(len(keys))
            return original(store, keys)

        monkeypatch.setattr(PostgresStore, "read_run_documents", counted)


def _same_runs(a: Results, b: Results) -> None:
    assert len(a) == len(b)
    assert a.run_ids == b.run_ids
    for x, y in zip(a, b, strict=True):
        assert (x.run_id, x.experiment_id, x.status) == (y.run_id, y.experiment_id, y.status)
        assert x.params == y.params and x.metrics == y.metrics
        assert x.duration_ms == y.duration_ms
        assert x.tags == y.tags and x.seed == y.seed
        assert x.started_at == y.started_at and x.finished_at == y.finished_at
        assert x.error == y.error
        assert x.derived == y.derived
        assert x.record == y.record  # every record-level field (provenance, notes ...)
        assert x.artifacts() == y.artifacts()
        assert x.logs() == y.logs() and x.list_data() == y.list_data()


def test_index_load_equals_file_load_without_reading_records(
    stores: tuple[PostgresStore, FileStoreConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg, fs = stores
    counter = _Counter(monkeypatch)
    from_files = load_results(fs)
    from_index = load_results(pg)
    assert from_index._cols is not None  # answered from the index's columns
    assert len(from_index) == 23 and from_index.run_ids == from_files.run_ids
    assert repr(from_index) == repr(from_files)
    assert "1 lost" in repr(from_index)
    # tabular work never reads a record
    pd.testing.assert_frame_equal(from_index.to_dataframe(), from_files.to_dataframe())
    pd.testing.assert_frame_equal(
        from_index.to_dataframe(include_record=False, include_derived=False),
        from_files.to_dataframe(include_record=False, include_derived=False))
    assert from_index.to_arrow().equals(from_files.to_arrow())
    pd.testing.assert_frame_equal(from_index.aggregate(by=["opt"], metrics=["loss"]),
                                  from_files.aggregate(by=["opt"], metrics=["loss"]))
    assert from_index.table() == from_files.table()
    assert from_index.by_status("failed").run_ids == from_files.by_status("failed").run_ids
    assert from_index.filter(lr=0.01).run_ids == from_files.filter(lr=0.01).run_ids
    assert from_index.filter(auc=0.9).run_ids == from_files.filter(auc=0.9).run_ids
    assert from_index[3:9].run_ids == from_files[3:9].run_ids
    assert from_index["r004"].params == from_files["r004"].params
    assert counter.calls == []
    # the records are fetched in one batch when a run's record is needed
    _same_runs(from_index, from_files)
    assert counter.calls == [23]
    assert from_index["r002"].artifact("weights") == b"\x00\x01"
    assert from_index["r003"].metric_series("curve") == [(0, 1.0), (1, 0.5)]


def test_filters_needing_records_match_the_file_load(
    stores: tuple[PostgresStore, FileStoreConfig],
) -> None:
    pg, fs = stores
    a, b = load_results(pg), load_results(fs)
    for text in ("tags contains 't1'", "status = 'lost'", "params.extra is not null",
                 "metrics.loss < 0.2 and not params.flag = true", "started_at is null"):
        assert a.where(text).run_ids == b.where(text).run_ids, text
    assert a.filter(tags="t2").run_ids == b.filter(tags="t2").run_ids
    _same_runs(a.where("params.width = 64"), b.where("params.width = 64"))
    assert len(a.successful) == len(b.successful)


@pytest.mark.parametrize("kwargs", [
    {"where": "params.lr < 0.05", "columns": ["params.lr", "metrics.loss", "duration_ms"]},
    {"where": {"params.opt": "adam"}, "columns": ["params", "tags", "finished_at"]},
    {"columns": ["metrics"], "order_by": "-metrics.loss", "limit": 5},
    {"where": "derived.auc > 0", "columns": ["derived.auc", "params.width"]},
    {"order_by": ["params.opt", "-started_at"]},
])
def test_pushdown_loads_match_the_file_load(
    stores: tuple[PostgresStore, FileStoreConfig], kwargs: dict[str, Any]
) -> None:
    pg, fs = stores
    a, b = load_results(pg, **kwargs), load_results(fs, **kwargs)
    assert a._cols is not None
    assert a.run_ids == b.run_ids
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe(), check_like=True)
    for x, y in zip(a, b, strict=True):
        assert x.record == y.record if kwargs.get("columns") is None else x.run_id == y.run_id
        assert x.params == y.params and x.metrics == y.metrics and x.derived == y.derived
    # the record of a projected run is the whole record (read when asked for)
    assert [r.record for r in a] == [load_results(fs)[r.run_id].record for r in a]


def test_falls_back_to_the_files_when_the_index_is_behind(
    stores: tuple[PostgresStore, FileStoreConfig], make_store: Any
) -> None:
    pg, fs = stores
    deferred = make_store(EXP, index_mode="deferred")
    deferred.put_run_record(make_record("r999", EXP, params={"lr": 5.0}))
    a, b = load_results(pg), load_results(fs)
    assert a._cols is None  # the index misses r999: the files answer
    assert "r999" in a.run_ids and a.run_ids == b.run_ids
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe())


def test_falls_back_to_the_files_when_the_index_is_unreachable(
    stores: tuple[PostgresStore, FileStoreConfig], file_root: Path, fast_breaker: None
) -> None:
    _, fs = stores
    down = PostgresStoreConfig(
        connection_string="postgresql://nobody@127.0.0.1:1/none", file_root=str(file_root),
        schema="x", experiment_id=EXP, connect_timeout=1,
    ).connect()
    a, b = load_results(down), load_results(fs)
    assert a._cols is None and a.run_ids == b.run_ids
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe())
    down.close()


def test_unscoped_collection_of_two_experiments(make_store: Any, collection: Any,
                                                file_root: Path) -> None:
    for eid in ("a:1", "b:1"):
        s = make_store(eid)
        for i in range(4):
            s.put_run_record(make_record(f"{eid[0]}{i}", eid, params={"i": i, eid[0]: True}))
        s.flush()
    root = make_store(None)
    a = load_results(root)
    b = load_results(FileStoreConfig(root=str(file_root)))
    assert a._cols is not None and a.experiments == ["a:1", "b:1"]
    assert a.run_ids == b.run_ids
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe())
    assert [r.record for r in a] == [r.record for r in b]


def test_a_run_deleted_after_loading_says_so(stores: tuple[PostgresStore, FileStoreConfig]
                                             ) -> None:
    pg, _ = stores
    res = load_results(pg)
    run = res["r005"]
    pg.delete_run("r005")
    pg.flush()
    assert run.params["lr"] == 0.001  # held by the loaded columns
    from metalab import NotFoundError

    with pytest.raises(NotFoundError, match="no longer in the store"):
        _ = run.record


def test_a_pool_of_one_connection_loads_the_same(
    stores: tuple[PostgresStore, FileStoreConfig], make_store: Any
) -> None:
    _, fs = stores
    single = make_store(EXP, pool_max_size=1)  # the two statements run one after the other
    a, b = load_results(single), load_results(fs)
    assert a._cols is not None and a.run_ids == b.run_ids
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe())


def test_a_record_with_an_unknown_status_is_reported_like_the_file_load(
    stores: tuple[PostgresStore, FileStoreConfig],
) -> None:
    import json

    pg, fs = stores
    doc = make_record("r500", EXP).to_dict()
    doc["status"] = "bogus"
    Path(pg.get_working_directory(), "runs", "r500.json").write_text(json.dumps(doc))
    pg.rebuild_index()
    seen: list[Exception] = []
    a = load_results(pg, on_error=seen.append)
    b = load_results(fs, on_error=lambda exc: None)
    assert a._cols is not None
    assert "r500" not in a.run_ids and a.run_ids == b.run_ids
    assert len(a.problems) == len(b.problems) == 1 and seen == list(a.problems)
    assert "r500" in str(a.problems[0])
