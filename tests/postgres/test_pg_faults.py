"""Faults: the server stopped mid-sweep, wrong credentials, unknown database."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psycopg
import pytest
from pg_helpers import file_docs, index_rows, records

from metalab._errors import IndexUnavailableError
from metalab.services import start_server, stop_server
from metalab.store import PostgresStoreConfig, parse_to_config
from metalab.store._index._pgconnect import CircuitBreaker
from metalab.store._postgres import _catchup


def test_server_stopped_mid_sweep_then_back(own_server, tmp_path: Path, fast_breaker,
                                            monkeypatch, caplog) -> None:
    info, folder, password = own_server
    monkeypatch.setattr(_catchup, "CATCH_UP_INTERVAL", 0.0)
    url = f"postgresql://{info.user}:{password}@{info.host}:{info.port}/{info.dbname}"
    cfg = parse_to_config(f"{url}?file_root={tmp_path}&schema=sweep&connect_timeout=5")
    store = cfg.scoped("exp:1").connect()
    recs = records("exp:1", 60)
    try:
        for r in recs[:20]:
            store.put_run_record(r)
        stop_server(folder, mode="immediate")
        slowest = 0.0
        with caplog.at_level(logging.WARNING, logger="metalab"):
            for r in recs[20:50]:
                t = time.perf_counter()
                store.put_run_record(r)
                slowest = max(slowest, time.perf_counter() - t)
        assert slowest < 2.0  # never a full connect timeout per call
        said = [r for r in caplog.records if r.levelno == logging.WARNING
                and ("deferred" in r.getMessage() or "catch-up failed" in r.getMessage())]
        assert len(said) <= 2, [r.getMessage() for r in said]  # one line per 30 s, not per run
        assert store.index_is_behind()
        assert len(store.list_run_records()) == 50  # from the files
        assert password not in caplog.text
        start_server(folder)
        deadline = time.monotonic() + 30
        while not store.index.breaker.allow():  # until the back-off has passed
            assert time.monotonic() < deadline, store.index.breaker.retry_in()
            time.sleep(0.01)
        for r in recs[50:]:  # the first write after recovery catches up
            store.put_run_record(r)
        assert not store.index_is_behind()
        with store.index.connection() as conn:
            assert index_rows(conn, "sweep") == file_docs(tmp_path, "exp:1")
        assert store.count_runs() == 60
    finally:
        start_server(folder)
        store.close()
    for path in tmp_path.rglob("*"):  # no secret in any file under the store
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_wrong_password_and_unknown_database(own_server, tmp_path: Path, fast_breaker) -> None:
    info, _folder, password = own_server
    base = f"{info.host}:{info.port}"
    cases = {
        f"postgresql://{info.user}:WrongPass-{password[::-1]}@{base}/{info.dbname}": "password",
        f"postgresql://{info.user}:{password}@{base}/no_such_db": "no_such_db",
    }
    for url, hint in cases.items():
        cfg = PostgresStoreConfig(connection_string=url, file_root=str(tmp_path),
                                  experiment_id="e:1", connect_timeout=3)
        store = cfg.connect()
        try:
            store.put_run_record(records("e:1", 1)[0])  # the write itself succeeds (files)
            assert store.get_run_record("r00000") is not None
            with pytest.raises(IndexUnavailableError) as err:
                store.rebuild_index()
            msg = str(err.value)
            assert base in msg and hint in msg
            assert password not in msg and password[::-1] not in msg
            assert password not in repr(cfg) and password not in repr(store)
        finally:
            store.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert os.path.isdir(tmp_path / ".metalab-index")


def test_breaker_skips_calls_while_open(tmp_path: Path, monkeypatch) -> None:
    # nothing listens on this port: the first call fails fast, the next ones do not even try
    cfg = PostgresStoreConfig(connection_string="postgresql://u@127.0.0.1:9/db",
                              file_root=str(tmp_path), experiment_id="e:1")
    store = cfg.connect()
    calls = 0
    real = store.index._get_pool

    def counting():
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(store.index, "_get_pool", counting)
    # a back-off longer than the test: any second call would be one the breaker let through
    monkeypatch.setattr(CircuitBreaker, "base", 60.0)
    t = time.perf_counter()
    for r in records("e:1", 200):
        store.put_run_record(r)
    store.flush()  # the background sender may not have tried yet: make it try now
    assert time.perf_counter() - t < 5
    assert calls == 1
    assert len(store.list_run_records()) == 200
    store.close()


def test_server_settings_are_passed_and_checked() -> None:
    """``start_server(settings=...)`` starts the server with those parameters;
    a name that is not a parameter name is refused before anything runs."""
    import shutil
    import tempfile

    import psycopg

    from metalab import ConfigError

    folder = Path(tempfile.mkdtemp(prefix="metalab-pgset-"))  # (the server user reaches /tmp)
    shutil.rmtree(folder)
    with pytest.raises(ConfigError, match="not a parameter name"):
        start_server(folder, fast=True, settings={"work_mem = 1; x": "8MB"})
    assert not folder.exists()
    info = start_server(folder, fast=True, settings={"work_mem": "8MB", "max_parallel_workers": 3})
    try:
        with psycopg.connect(info.url) as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
            assert conn.execute("SHOW max_parallel_workers").fetchone() == ("3",)
    finally:
        stop_server(folder, mode="immediate", remove=True)


def test_catch_up_of_a_scoped_store_replays_other_experiments(make_store, pg_conn, pg_schema,
                                                              file_root) -> None:
    """A sweep's store is scoped to its experiment; its catch-up still replays what
    other experiments left in the journal (the index is shared)."""
    sweep = make_store("exp:1")
    sweep.index.ping()
    other = make_store("exp:2", index_mode="deferred")  # journals, never writes the index
    for r in records("exp:2", 15):
        other.put_run_record(r)
    other.put_experiment_manifest("exp:2", {"m": 2})
    assert other.index_is_behind()
    assert sweep.catch_up() == 16  # 15 runs and the manifests of exp:2
    assert index_rows(pg_conn, pg_schema, "exp:2") == file_docs(file_root, "exp:2")
    assert not other.index_is_behind()
    assert len(other.index.manifests("exp:2")) == 1


def test_flusher_retries_the_catch_up_once_the_server_is_back(own_server, tmp_path: Path,
                                                              fast_breaker) -> None:
    """Changes journaled while the server was down reach the index without another
    write, read or reconcile() of the process: its flusher retries by itself."""
    info, folder, password = own_server
    url = f"postgresql://{info.user}:{password}@{info.host}:{info.port}/{info.dbname}"
    cfg = parse_to_config(f"{url}?file_root={tmp_path}&schema=retry&connect_timeout=5")
    store = cfg.scoped("exp:1").connect()
    try:
        store.index.ping()
        stop_server(folder, mode="fast")
        for r in records("exp:1", 30):
            store.put_run_record(r)
        assert store.flush()  # sent or journaled: journaled, the server is down
        start_server(folder)
        deadline = time.monotonic() + 15
        while True:  # (index_is_behind() reads the journal: it starts no catch-up)
            if not store.index_is_behind():
                with psycopg.connect(url, autocommit=True) as conn:
                    assert index_rows(conn, "retry") == file_docs(tmp_path, "exp:1")
                break
            assert time.monotonic() < deadline, "the journaled changes never reached the index"
            time.sleep(0.1)
    finally:
        start_server(folder)
        store.close()
