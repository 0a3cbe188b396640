"""The FileStore calls its catalog through the one index interface (store._index.Index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalab.query._parser import as_query
from metalab.store import FileStore, FileStoreConfig
from metalab.store._index._filestore import CatalogIndex, scan_runs
from metalab.store._index._interface import Index
from metalab.testing import make_record

EXP = "exp:1"


def _store(root: Path, **kw: object) -> FileStore:
    return FileStore(FileStoreConfig(root=str(root), experiment_id=EXP, **kw))  # type: ignore[arg-type]


def _fill(store: FileStore, n: int = 5) -> None:
    for i in range(n):
        store.put_run_record(make_record(f"r{i:03d}", EXP, params={"i": i}))


def test_index_is_abstract() -> None:
    with pytest.raises(TypeError):
        Index()  # type: ignore[abstract]


def test_filestore_holds_one_catalog_index(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert isinstance(store._query_index, CatalogIndex)
    assert store._query_index is store._query_index


def test_catalog_index_answers_as_the_scan(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _fill(store)
    query = as_query("params.i >= 2", ["params.i"], "params.i", None)
    selected = store._query_index.select(query, None)
    assert selected is not None
    assert selected == scan_runs(store, None, query) == store.query_runs(where=query)
    assert [r["run_id"] for r in selected] == ["r002", "r003", "r004"]


def test_catalog_index_counts_and_tables_of_chosen_columns(tmp_path: Path) -> None:
    """Counts and projected run tables come from the catalog; a load of whole
    records (no columns) is left to the files."""
    store = _store(tmp_path)
    _fill(store, 2)
    assert store._query_index.count(None, None) == 2
    assert store._query_index.count(None, "success") == 2
    assert store._query_index.count(None, "failed") == 0
    assert store._query_index.status_counts(None) == {"success": 2}
    assert store._query_index.table(None, None) is None
    table = store._query_index.table(None, as_query(None, ["params.i"], None, None))
    assert table is not None and table["n"] == 2
    assert table["fields"] == {("params", "i"): [0, 1]}


def test_catalog_index_refresh_and_rebuild_read_the_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _fill(store, 3)
    assert store._query_index.rebuild() == 3
    assert store._query_index.refresh() == 0  # nothing changed since
    store.put_run_record(make_record("r099", EXP))  # one new run
    assert store._query_index.refresh() == 1
    assert store.rebuild_index() == 4


def test_read_only_store_never_selects_from_the_catalog(tmp_path: Path) -> None:
    _fill(_store(tmp_path))
    reader = _store(tmp_path, read_only=True)
    query = as_query(None, None, None, None)
    assert reader._query_index.select(query, None) is None
    assert len(reader.query_runs()) == 5
