"""Fixtures of the PostgreSQL store tests: a fresh schema per test on the session server."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from metalab.services import ServerInfo, start_server, stop_server
from metalab.store import PostgresStore, PostgresStoreConfig
from metalab.store._index._pgconnect import CircuitBreaker


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A unique schema name; the schema is dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def collection(pg_url: str, pg_schema: str, file_root: Path) -> PostgresStoreConfig:
    """An unscoped PostgresStoreConfig on a fresh schema and file root."""
    return PostgresStoreConfig(
        connection_string=pg_url, file_root=str(file_root), schema=pg_schema
    )


@pytest.fixture
def make_store(collection: PostgresStoreConfig) -> Iterator[Callable[..., PostgresStore]]:
    opened: list[PostgresStore] = []

    def make(experiment_id: str | None = "exp:1", **changes: Any) -> PostgresStore:
        cfg = collection.scoped(experiment_id) if experiment_id else collection
        if changes:
            import dataclasses

            cfg = dataclasses.replace(cfg, **changes)
        store = cfg.connect()
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def fast_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short back-off so fault tests finish quickly."""
    monkeypatch.setattr(CircuitBreaker, "base", 0.2)
    monkeypatch.setattr(CircuitBreaker, "cap", 0.5)


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[ServerInfo, str, str]]:
    """A private password-protected server that tests may stop and restart.

    Yields ``(info, folder, password)``.
    """
    folder = tempfile.mkdtemp(prefix="metalab-pgown-")
    password = "pw-" + secrets.token_hex(8)
    info = start_server(folder, password=password, dbname="metalab")  # durable commits
    try:
        yield info, folder, password
    finally:
        stop_server(folder, mode="immediate", remove=True)
