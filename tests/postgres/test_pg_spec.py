"""Every PostgreSQL snippet of the storage spec runs as written, on a real server.

The spec's URIs (``postgresql://localhost/db``, ``postgresql://user@localhost/metalab``)
and folders (``/data``, ``/path/to/files``...) are mapped to the test server (a
fresh database per test, so the default ``public`` schema is clean) and to
temporary folders; the code shape stays as written.
"""

from __future__ import annotations

import secrets
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_helpers import records
from psycopg import sql

from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig


@pytest.fixture
def fresh_db(pg_url: str) -> Iterator[str]:
    """URL of a new, empty database on the test server."""
    name = f"spec_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = pg_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_db: str
) -> Iterator[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("pg_spec_snippets")
    sys.modules[module.__name__] = module
    module.__dict__["__fresh_db__"] = fresh_db
    try:
        yield module.__dict__
    finally:
        del sys.modules[module.__name__]


def run(ns: dict[str, Any], code: str, tmp_path: Path) -> None:
    """Execute a spec snippet with its server URIs and folders mapped to the test ones."""
    code = textwrap.dedent(code)
    db = ns["__fresh_db__"]
    for uri in ("postgresql://user@localhost/metalab", "postgresql://localhost/db"):
        code = code.replace(uri, db)
    for folder in ("/shared/experiments", "/path/to/existing/store", "/path/to/export",
                   "/path/to/files", "/data"):
        code = code.replace(f'"{folder}', f'"{tmp_path}{folder}')
        code = code.replace(f"={folder}", f"={tmp_path}{folder}")
    exec(compile(code, "<spec snippet>", "exec"), ns)


def test_config_and_uri_with_metalab_run(session: dict[str, Any], tmp_path: Path) -> None:
    from metalab.definition import Experiment, grid, operation, seeds

    @operation(name="square")
    def square(params, capture):
        capture.metric("y", params["x"] ** 2)

    session["exp"] = Experiment(
        name="my_exp", version="1.0", context={}, operation=square,
        params=grid(x=[1, 2, 3]), seeds=seeds(0, 2),
    )
    session["metalab"] = __import__("metalab")
    run(session, """
        from metalab.store import PostgresStoreConfig
        # PostgresStore requires file_root for logs/artifacts
        config = PostgresStoreConfig(
            connection_string="postgresql://user@localhost/metalab",
            file_root="/shared/experiments",
        )
        metalab.run(exp, store=config)
    """, tmp_path)
    store = session["config"].scoped("my_exp:1.0").connect()
    try:
        assert isinstance(store, PostgresStore)
        assert store.count_runs() == 6
        assert not store.index_is_behind()
        assert (tmp_path / "shared/experiments/my_exp_1.0/runs").is_dir()
        files = FileStoreConfig(root=str(tmp_path / "shared/experiments"),
                                experiment_id="my_exp:1.0").connect()
        assert sorted(d["run_id"] for d in store.iter_run_documents()) == sorted(
            d["run_id"] for d in files.iter_run_documents())
    finally:
        store.close()

    run(session, """
        # Or via URI with file_root parameter
        metalab.run(
            exp,
            store="postgresql://user@localhost/metalab?file_root=/shared/experiments",
        )
    """, tmp_path)


def test_index_rebuild(session: dict[str, Any], tmp_path: Path) -> None:
    files = FileStoreConfig(root=str(tmp_path / "path/to/files")).for_experiment("e:1").connect()
    for r in records("e:1", 5):
        files.put_run_record(r)
    run(session, """
        from metalab.store import PostgresStoreConfig
        config = PostgresStoreConfig(
            connection_string="postgresql://localhost/db",
            file_root="/path/to/files",
        )
        store = config.connect()
        store.rebuild_index() # Re-indexes all records from FileStore
    """, tmp_path)
    store = session["store"]
    assert store.index.count_runs("e:1") == 5
    store.close()


def test_existing_filestore_and_export(session: dict[str, Any], tmp_path: Path) -> None:
    fs = FileStoreConfig(root=str(tmp_path / "path/to/existing/store")).connect()
    for r in records("e:1", 4):
        fs.put_run_record(r)  # unscoped writes land in the collection root
    scoped = FileStoreConfig(root=str(tmp_path / "path/to/existing/store"),
                             experiment_id="e:2").connect()
    for r in records("e:2", 3):
        scoped.put_run_record(r)
    run(session, """
        from metalab.store import FileStoreConfig, PostgresStore
        # Wrap an existing FileStore with Postgres indexing
        filestore = FileStoreConfig(root="/path/to/existing/store").connect()
        pg_store = PostgresStore.from_filestore(
            "postgresql://localhost/db",
            filestore,
            rebuild=True, # Index existing records
        )
        # Export back to standalone FileStore
        exported = pg_store.to_filestore("/path/to/export")
    """, tmp_path)
    pg_store = session["pg_store"]
    assert pg_store.index.count_runs("e:2") == 3
    exported = session["exported"]
    assert exported.config.root == str(tmp_path / "path/to/export")
    out = exported.config.for_experiment("e:2").connect()
    assert len(out.list_run_records()) == 3
    pg_store.close()


def test_store_transfer(session: dict[str, Any], tmp_path: Path) -> None:
    src = PostgresStoreConfig(connection_string=session["__fresh_db__"],
                              file_root=str(tmp_path / "data"), experiment_id="my_exp:1.0").connect()
    for r in records("my_exp:1.0", 4):
        src.put_run_record(r)
    src.put_derived("r00000", {"d": 1})
    src.close()
    run(session, """
        from metalab.store import export_store
        # Export specific experiment
        export_store(
            source="postgresql://localhost/db?file_root=/data",
            destination="./backup",
            experiment_id="my_exp:1.0",
        )
    """, tmp_path)
    backup = FileStoreConfig(root=str(tmp_path / "backup"), experiment_id="my_exp:1.0").connect()
    assert len(backup.list_run_records()) == 4
    assert backup.get_derived("r00000") == {"d": 1}


def test_creating_stores_programmatically(session: dict[str, Any], tmp_path: Path) -> None:
    run(session, """
        from metalab.store import create_store, FileStoreConfig, parse_to_config
        store = create_store("postgresql://localhost/db", file_root="/path/to/files")
        # Parse URI to config (useful for inspection/modification)
        config = parse_to_config("postgresql://localhost/db?file_root=/data")
        config = config.scoped("my_exp:1.0") # Add experiment scoping
        store = config.connect()
    """, tmp_path)
    store = session["store"]
    assert isinstance(store, PostgresStore)
    assert store.config.file_root == str(tmp_path / "data")
    assert store.experiment_id == "my_exp:1.0"
    for r in records("my_exp:1.0", 2):
        store.put_run_record(r)
    assert store.index.count_runs("my_exp:1.0") == 2
    store.close()
