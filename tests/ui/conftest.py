"""Fixtures of the UI tests: the generated store on a FileStore and on a PostgresStore,
and test clients of the app over them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from ui_store import fill


@pytest.fixture(scope="session")
def file_store_root() -> Iterator[str]:
    """A FileStore collection holding the generated sweep (made once per session)."""
    with tempfile.TemporaryDirectory(prefix="metalab-ui-") as folder:
        root = os.path.join(folder, "experiments")
        fill(root)
        yield root




@pytest.fixture(scope="session")
def pg_store_config(pg_url: str) -> Iterator[Any]:
    """A PostgresStore collection (own schema and file root) holding the generated sweep."""
    import secrets

    import psycopg
    from psycopg import sql

    from metalab.store import PostgresStoreConfig

    schema = f"ui_{secrets.token_hex(6)}"
    with tempfile.TemporaryDirectory(prefix="metalab-ui-pg-") as folder:
        config = PostgresStoreConfig(connection_string=pg_url, file_root=folder, schema=schema)
        fill(config)
        yield config
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _client(store: Any, **kwargs: Any) -> Any:
    from starlette.testclient import TestClient

    from metalab.ui import create_app

    return TestClient(create_app(store, **kwargs), base_url="http://127.0.0.1")


@pytest.fixture(params=["file", "postgres"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A test client of the UI over the generated store: a FileStore, then a PostgresStore."""
    from metalab.store import make_store

    if request.param == "file":
        target: Any = request.getfixturevalue("file_store_root")
    else:
        target = request.getfixturevalue("pg_store_config")
    with make_store(target) as store, _client(store, locator="./experiments") as c:
        yield c


@pytest.fixture
def file_client(file_store_root: str) -> Iterator[Any]:
    """A test client over the generated FileStore only (for tests of the server itself)."""
    from metalab.store import make_store

    with make_store(file_store_root) as store, _client(store, locator=file_store_root) as c:
        yield c
