"""Fixtures of the analysis tests: stores filled through the Store API only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from analysis_support import EXP, MEMORY, MemoryConfig, MemoryStore, make_record

from metalab.model import Status
from metalab.store import FileStoreConfig, Store


@pytest.fixture
def root(tmp_path: Any) -> Any:
    return tmp_path / "experiments"


@pytest.fixture
def file_store(root: Any) -> Callable[[str], Store]:
    """``file_store(experiment_id)`` -> a scoped FileStore under ``root``."""

    def make(experiment_id: str = EXP) -> Store:
        store: Store = FileStoreConfig(root=str(root), experiment_id=experiment_id).connect()
        return store

    return make


@pytest.fixture
def sweep(file_store: Callable[[str], Store]) -> Store:
    """Six runs of EXP: a in {1, 2, 3} x b in {"x", "y"}; one failed run."""
    store = file_store(EXP)
    i = 0
    for a in (1, 2, 3):
        for b in ("x", "y"):
            status = Status.FAILED if (a, b) == (3, "y") else Status.SUCCESS
            metrics = {} if status is Status.FAILED else {"loss": 1.0 / a, "acc": 0.5 + 0.1 * a}
            store.put_run_record(
                make_record(
                    f"run{i}",
                    status=status,
                    params={"a": a, "b": b},
                    metrics=metrics,
                    tags=("even",) if a % 2 == 0 else ("odd",),
                    minute=10 - i,  # reverse of the id order
                )
            )
            i += 1
    return store


@pytest.fixture
def memory_store(request: pytest.FixtureRequest) -> Iterator[MemoryStore]:
    name = request.node.name
    MEMORY.pop(name, None)
    try:
        yield MemoryConfig(name=name, experiment_id=EXP).connect()
    finally:
        MEMORY.pop(name, None)
