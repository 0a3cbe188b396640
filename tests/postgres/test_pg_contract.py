"""The shipped store contract suite, run against PostgresStore on a real server."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from metalab.store import PostgresStore, PostgresStoreConfig, Store
from metalab.testing import CONTRACT_EXPERIMENT, FileRaw, RawAccess, StoreContractTests


class PgRaw(FileRaw):
    """Raw access: the files under file_root (the source of truth)."""

    def corrupt_run(self, run_id: str) -> str:
        # a file broken behind the store's back; tell the index it changed, as a
        # write through the store would have
        where = super().corrupt_run(run_id)
        assert isinstance(self.store, PostgresStore)
        self.store._journal.mark(CONTRACT_EXPERIMENT, "run", run_id)
        return where

    def relocated(self, dest: str) -> Store:
        cfg = self.store.config
        assert isinstance(cfg, PostgresStoreConfig)
        shutil.copytree(self.folder, Path(dest) / self.folder.name)
        moved = dataclasses.replace(cfg, file_root=dest)
        store: Store = moved.connect()
        return store


class TestPostgresContract(StoreContractTests):
    @pytest.fixture
    def store(self, collection: PostgresStoreConfig):
        s = collection.scoped(CONTRACT_EXPERIMENT).connect()
        yield s
        s.close()

    @pytest.fixture
    def raw(self, store: Store) -> RawAccess:
        return PgRaw(store)
