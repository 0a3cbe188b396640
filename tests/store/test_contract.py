"""Run the shipped store contract suite against every backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from metalab.store import FileStoreConfig, Store
from metalab.testing import CONTRACT_EXPERIMENT, FileRaw, RawAccess, StoreContractTests

#: backends the contract runs against ("postgres" is added with that backend)
BACKENDS = ["file"]


@dataclass
class Backend:
    store: Store
    raw: RawAccess


def _file_backend(tmp_path: Path) -> Backend:
    store = FileStoreConfig(root=str(tmp_path / "coll"), experiment_id=CONTRACT_EXPERIMENT).connect()
    return Backend(store, FileRaw(store))


_FACTORIES = {"file": _file_backend}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    made = _FACTORIES[request.param](tmp_path)
    yield made
    made.store.close()


class TestStoreContract(StoreContractTests):
    @pytest.fixture
    def store(self, backend: Backend) -> Store:
        return backend.store

    @pytest.fixture
    def raw(self, backend: Backend) -> RawAccess:
        return backend.raw
