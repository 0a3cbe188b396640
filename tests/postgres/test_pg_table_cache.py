"""The server-kept answer of the default full load (``run_table_cache``).

A repeat ``load_results`` of an unchanged experiment is answered from the
cache; every kind of write makes the next load a fresh query; a running run
still flips to "lost" when its heartbeat ages past the cutoff.  Every answer
is compared with the FileStore load (the source of truth).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from psycopg import sql

from metalab import load_results
from metalab.analysis import Results
from metalab.model import Status
from metalab.store import FileStoreConfig, PostgresStore
from metalab.testing import make_record

EXP = "exp:1"
NOW = datetime.now(UTC).replace(microsecond=0)


def _fill(store: PostgresStore, n: int = 12, eid: str = EXP) -> None:
    for i in range(n):
        kw: dict[str, Any] = {}
        if i == 5:  # a run whose worker still beats, 2 minutes ago
            kw = {"status": Status.RUNNING, "heartbeat_at": NOW - timedelta(minutes=2),
                  "finished_at": None}
        store.put_run_record(make_record(
            f"r{i:03d}", eid, params={"lr": 0.1 * (i % 3), "width": 16 * (1 + i % 2)},
            metrics={"loss": 1.0 / (i + 1)}, started_at=NOW - timedelta(hours=1, seconds=-i),
            **kw))
    store.flush()


@pytest.fixture
def pg(make_store: Any, monkeypatch: pytest.MonkeyPatch) -> PostgresStore:
    from metalab.store._index import _pgcache

    monkeypatch.setenv("METALAB_LOST_AFTER", "3600")
    # answers are kept at once (by default only for an experiment not written
    # for a few seconds: see test_a_sweep_still_writing_is_not_cached)
    monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 0.0)
    store = make_store(EXP)
    _fill(store)
    assert not store.index_is_behind()
    return store


@pytest.fixture
def fs(file_root: Path) -> FileStoreConfig:
    return FileStoreConfig(root=str(file_root), experiment_id=EXP)


def _load(pg: PostgresStore) -> tuple[Results, str | None]:
    res = load_results(pg)
    assert res._cols is not None  # answered by the index, not the files
    return res, pg.index.last_table_source


def _same(a: Results, b: Results) -> None:
    assert a.run_ids == b.run_ids
    assert [r.status for r in a] == [r.status for r in b]
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe())


def _cache_row(pg_conn: Any, schema: str, eid: str = EXP) -> tuple[Any, ...] | None:
    return pg_conn.execute(
        sql.SQL("SELECT generation, payload FROM {}.run_table_cache WHERE experiment_id = %s")
        .format(sql.Identifier(schema)), (eid,)).fetchone()


def test_repeat_load_is_answered_from_the_cache(pg: PostgresStore, fs: FileStoreConfig,
                                                pg_conn: Any, pg_schema: str) -> None:
    first, source1 = _load(pg)
    assert source1 == "query"
    assert _cache_row(pg_conn, pg_schema) is not None
    second, source2 = _load(pg)
    assert source2 == "cache"
    third, source3 = _load(pg)
    assert source3 == "cache"
    files = load_results(fs)
    for res in (first, second, third):
        _same(res, files)
    assert "running" in {r.status for r in second}
    assert second["r003"].params == files["r003"].params


def test_only_the_default_full_load_uses_the_cache(pg: PostgresStore, fs: FileStoreConfig,
                                                  pg_conn: Any, pg_schema: str) -> None:
    for kwargs in ({"where": "params.width = 32"}, {"columns": ["params.lr"]},
                   {"order_by": "-metrics.loss"}, {"limit": 3}):
        a, b = load_results(pg, **kwargs), load_results(fs, **kwargs)
        assert pg.index.last_table_source == "query", kwargs
        assert a.run_ids == b.run_ids
        assert _cache_row(pg_conn, pg_schema) is None  # nor do they write one
    _load(pg)
    a = load_results(pg, where="params.width = 32")
    assert pg.index.last_table_source == "query"
    assert a.run_ids == load_results(fs, where="params.width = 32").run_ids


def _new_run(pg: PostgresStore) -> None:
    pg.put_run_record(make_record("r900", EXP, params={"lr": 9.0}, metrics={"loss": 0.5}))


def _rewritten_run(pg: PostgresStore) -> None:
    rec = pg.get_run_record("r002")
    assert rec is not None
    pg.put_run_record(rec.replace(metrics={"loss": 123.0}))


def _deleted_run(pg: PostgresStore) -> None:
    pg.delete_run("r004")


def _derived(pg: PostgresStore) -> None:
    pg.put_derived("r001", {"auc": 0.75})


def _rebuilt(pg: PostgresStore) -> None:
    # a run written to the files behind the index's back, then a rebuild
    files = FileStoreConfig(root=pg.config.file_root, experiment_id=EXP).connect()
    files.put_run_record(make_record("r902", EXP, params={"lr": 7.0}))
    pg.rebuild_index()


@pytest.mark.parametrize("write", [_new_run, _rewritten_run, _deleted_run, _derived, _rebuilt])
def test_every_write_makes_the_next_load_fresh(
    pg: PostgresStore, fs: FileStoreConfig, write: Callable[[PostgresStore], None]
) -> None:
    _load(pg)
    assert _load(pg)[1] == "cache"
    write(pg)
    pg.flush()
    after, source = _load(pg)
    assert source == "query"
    _same(after, load_results(fs))
    again, source = _load(pg)  # the fresh answer is kept in turn
    assert source == "cache"
    _same(again, load_results(fs))


def test_reconcile_after_an_index_outage_makes_the_next_load_fresh(
    pg: PostgresStore, fs: FileStoreConfig, make_store: Any
) -> None:
    _load(pg)
    assert _load(pg)[1] == "cache"
    deferred = make_store(EXP, index_mode="deferred")  # writes the files, not the index
    deferred.put_run_record(make_record("r901", EXP, params={"lr": 5.0}))
    behind = load_results(pg)
    assert behind._cols is None and "r901" in behind.run_ids  # the files answer meanwhile
    pg.reconcile()
    after, source = _load(pg)
    assert source == "query" and "r901" in after.run_ids
    _same(after, load_results(fs))


def test_running_run_turns_lost_on_a_cached_load(pg: PostgresStore, fs: FileStoreConfig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _load(pg)
    cached, source = _load(pg)
    assert source == "cache" and cached["r005"].status == "running"
    monkeypatch.setenv("METALAB_LOST_AFTER", "60")  # the 2-minute-old heartbeat is now too old
    lost, source = _load(pg)
    assert source == "query" and lost["r005"].status == "lost"
    _same(lost, load_results(fs))
    assert _load(pg)[1] == "cache"
    monkeypatch.setenv("METALAB_LOST_AFTER", "3600")  # and back: alive again
    alive, source = _load(pg)
    assert source == "query" and alive["r005"].status == "running"
    _same(alive, load_results(fs))


def test_a_cache_row_of_an_older_generation_is_ignored(
    pg: PostgresStore, fs: FileStoreConfig, pg_conn: Any, pg_schema: str
) -> None:
    _load(pg)
    old = _cache_row(pg_conn, pg_schema)
    assert old is not None
    _new_run(pg)
    pg.flush()
    _load(pg)  # the cache now holds the new answer; put the old one back by hand
    pg_conn.execute(sql.SQL(
        "UPDATE {}.run_table_cache SET generation = %s, payload = %s WHERE experiment_id = %s"
    ).format(sql.Identifier(pg_schema)), (old[0], old[1], EXP))
    res, source = _load(pg)
    assert source == "query" and "r900" in res.run_ids
    _same(res, load_results(fs))


def test_dropping_another_experiment_keeps_this_cache(make_store: Any, pg: PostgresStore,
                                                     pg_conn: Any, pg_schema: str) -> None:
    other = make_store("other:1")
    _fill(other, 3, "other:1")
    _load(pg)
    assert _load(pg)[1] == "cache"
    assert pg.index.drop_experiments_except([EXP]) == ["other:1"]
    assert _load(pg)[1] == "cache"
    assert pg.index.drop_experiments_except([]) == [EXP]
    assert _cache_row(pg_conn, pg_schema) is None


def test_loads_work_without_the_cache_table(pg: PostgresStore, fs: FileStoreConfig,
                                            pg_conn: Any, pg_schema: str) -> None:
    _load(pg)
    pg_conn.execute(sql.SQL("DROP TABLE {}.run_table_cache").format(sql.Identifier(pg_schema)))
    for _ in range(2):
        res, source = _load(pg)
        assert source == "query"
        _same(res, load_results(fs))
    _new_run(pg)  # writes still work too
    pg.flush()
    res, _ = _load(pg)
    assert "r900" in res.run_ids


def test_schema_dropped_then_rebuilt(pg: PostgresStore, fs: FileStoreConfig, pg_conn: Any,
                                     pg_schema: str) -> None:
    _load(pg)
    assert _load(pg)[1] == "cache"
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pg_schema)))
    load_results(pg)  # the index lost its tables: the files answer
    pg.rebuild_index()
    res, source = _load(pg)
    assert source == "query"
    _same(res, load_results(fs))
    assert _load(pg)[1] == "cache"


def test_an_answer_above_the_size_limit_is_not_kept(pg: PostgresStore, pg_conn: Any,
                                                    pg_schema: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from metalab.store._index import _pgcache

    monkeypatch.setattr(_pgcache, "CACHE_MAX_BYTES", 100)
    _load(pg)
    assert _load(pg)[1] == "query"
    assert _cache_row(pg_conn, pg_schema) is None


def test_a_payload_of_another_layout_is_recomputed(pg: PostgresStore, fs: FileStoreConfig,
                                                   pg_conn: Any, pg_schema: str) -> None:
    _load(pg)
    pg_conn.execute(sql.SQL(
        "UPDATE {}.run_table_cache SET payload = '\\x4d4c5431'::bytea"
    ).format(sql.Identifier(pg_schema)))
    res, source = _load(pg)
    assert source == "query"
    _same(res, load_results(fs))
    assert _load(pg)[1] == "cache"  # rewritten at the same generation


def test_a_write_committed_during_a_load_is_never_hidden(
    pg: PostgresStore, fs: FileStoreConfig, make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer commits after the load's snapshot, before its answer is kept."""
    from metalab.store._index._pgcache import RunTableCache

    original = RunTableCache._write
    other = make_store(EXP)

    def racing(self: RunTableCache, *args: Any) -> None:
        other.put_run_record(make_record("r950", EXP, params={"lr": 3.0}))
        assert other.flush()
        original(self, *args)

    monkeypatch.setattr(RunTableCache, "_write", racing)
    first, source = _load(pg)
    assert source == "query" and "r950" not in first.run_ids  # the snapshot's answer
    monkeypatch.setattr(RunTableCache, "_write", original)
    second, source = _load(pg)
    assert source == "query" and "r950" in second.run_ids
    _same(second, load_results(fs))
    assert _load(pg)[1] == "cache"


def test_a_role_that_may_only_read_loads_with_and_without_the_cache(
    pg: PostgresStore, fs: FileStoreConfig, pg_conn: Any, pg_schema: str, pg_url: str,
    file_root: Path,
) -> None:
    """Writing the cache is refused (no privilege): the load answers anyway."""
    import secrets

    import psycopg

    from metalab.store import PostgresStoreConfig

    role = f"ml_reader_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        s, r = sql.Identifier(pg_schema), sql.Identifier(role)
        pg_conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
        pg_conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r))
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        info["user"] = role
        reader = PostgresStoreConfig(connection_string=psycopg.conninfo.make_conninfo(**info),
                                     file_root=str(file_root), schema=pg_schema,
                                     experiment_id=EXP).connect()
        try:
            files = load_results(fs)
            for _ in range(2):
                res, source = _load(reader)
                assert source == "query"
                _same(res, files)
            _load(pg)  # a writer keeps the answer; the reader may read it
            res, source = _load(reader)
            assert source == "cache"
            _same(res, files)
        finally:
            reader.close()
    finally:
        pg_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_sweep_still_writing_is_not_cached(pg: PostgresStore, pg_conn: Any, pg_schema: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An experiment written moments ago is answered by a query and its answer is
    not kept (the next write would make it stale; keeping it slows the load)."""
    from metalab.store._index import _pgcache

    monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 3600.0)
    _, source = _load(pg)
    assert source == "query" and _cache_row(pg_conn, pg_schema) is None
    _, source = _load(pg)
    assert source == "query" and _cache_row(pg_conn, pg_schema) is None
    monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 0.0)  # now quiet long enough
    _load(pg)
    assert _cache_row(pg_conn, pg_schema) is not None
    assert _load(pg)[1] == "cache"


def test_null_values_and_missing_names_survive_the_cache(pg: PostgresStore, fs: FileStoreConfig
                                                         ) -> None:
    """A param that is JSON null and one that some runs lack: the kept answer
    (columns, plus whole objects where the columns cannot tell them apart)
    gives the same runs as the files."""
    pg.put_run_record(make_record("r900", EXP, params={"lr": None, "extra": 1},
                                  metrics={"loss": None}))
    pg.put_run_record(make_record("r901", EXP, params={"extra": 2.5}, metrics={}))
    pg.flush()
    first, source = _load(pg)
    second, source2 = _load(pg)
    assert (source, source2) == ("query", "cache")
    files = load_results(fs)
    for res in (first, second):
        _same(res, files)
        assert res["r900"].params == {"extra": 1, "lr": None}
        assert res["r900"].metrics == {"loss": None}
        assert res["r901"].params == {"extra": 2.5} and res["r901"].metrics == {}
        assert res["r001"].params == files["r001"].params
