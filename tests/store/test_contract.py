"""Run the shipped store contract suite against every backend."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig, Store
from metalab.testing import CONTRACT_EXPERIMENT, FileRaw, RawAccess, StoreContractTests

#: backends the contract runs against
BACKENDS = ["file", "postgres"]


@dataclass
class Backend:
    store: Store
    raw: RawAccess
    cleanup: Callable[[], None] = lambda: None


def _file_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    store = FileStoreConfig(root=str(tmp_path / "coll"), experiment_id=CONTRACT_EXPERIMENT).connect()
    return Backend(store, FileRaw(store))


class PgRaw(FileRaw):
    """Raw access to a PostgresStore: the files under file_root (the source of truth)."""

    def corrupt_run(self, run_id: str) -> str:
        # a file broken behind the store's back; tell the index it changed, as a
        # write through the store would have
        where = super().corrupt_run(run_id)
        assert isinstance(self.store, PostgresStore)
        self.store._journal.mark_behind(CONTRACT_EXPERIMENT, [run_id])
        return where

    def relocated(self, dest: str) -> Store:
        cfg = self.store.config
        assert isinstance(cfg, PostgresStoreConfig)
        shutil.copytree(self.folder, Path(dest) / self.folder.name)
        moved: Store = dataclasses.replace(cfg, file_root=dest).connect()
        return moved


def _postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    import psycopg
    from psycopg import sql

    url = request.getfixturevalue("pg_url")
    schema = f"contract_{secrets.token_hex(6)}"  # a fresh schema per test
    store = PostgresStoreConfig(
        connection_string=url, file_root=str(tmp_path / "coll"), schema=schema,
        experiment_id=CONTRACT_EXPERIMENT,
    ).connect()

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    return Backend(store, PgRaw(store), drop)


_FACTORIES = {"file": _file_backend, "postgres": _postgres_backend}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = _FACTORIES[request.param](request, tmp_path)
    yield made
    made.store.close()
    made.cleanup()


class TestStoreContract(StoreContractTests):
    @pytest.fixture
    def store(self, backend: Backend) -> Store:
        return backend.store

    @pytest.fixture
    def raw(self, backend: Backend) -> RawAccess:
        return backend.raw
