"""Fixtures of the query tests: small stores with varied runs, a PostgreSQL store factory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from query_support import make_doc, write_doc

from metalab.store import FileStore


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``sub/name`` (e.g. ``runs/r001.json``) of every file the FileStore catalog reads."""
    from metalab.store._index import _catalog

    seen: list[str] = []
    real = _catalog.read_run_file

    def counting(path: str, dir_fd: int | None = None) -> Any:
        if dir_fd is not None:  # a name in the folder open as dir_fd (Linux: /proc names it)
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        seen.append("/".join(Path(path).parts[-2:]))
        return real(path, dir_fd)

    monkeypatch.setattr(_catalog, "read_run_file", counting)
    return seen


@pytest.fixture
def fstore(tmp_path: Path) -> FileStore:
    store = FileStore(str(tmp_path / "store"), experiment_id="q:1")
    for i in range(20):
        write_doc(store, make_doc(i))
    return store


@pytest.fixture
def pg_factory(pg_url: str) -> Iterator[Callable[[FileStore], Any]]:
    """Put a PostgreSQL index (fresh schema) over a FileStore; drops the schemas after."""
    import psycopg
    from psycopg import sql

    from metalab.store import PostgresStore

    made: list[tuple[Any, str]] = []

    def make(fs: FileStore) -> Any:
        schema = f"q_{secrets.token_hex(5)}"
        pg = PostgresStore.from_filestore(pg_url, fs, rebuild=True, schema=schema)
        made.append((pg, schema))
        return pg

    yield make
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for pg, schema in made:
            pg.close()
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
