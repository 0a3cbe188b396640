"""The PostgresStore calls its tables through the one index interface (store._index.Index)."""

from __future__ import annotations

from pg_helpers import records

from metalab.query._parser import as_query
from metalab.store._index._pgquery import PostgresQueries


def test_postgres_store_holds_one_index(make_store) -> None:
    store = make_store("exp:1")
    for r in records("exp:1", 6):
        store.put_run_record(r)
    index = store._query_index
    assert isinstance(index, PostgresQueries)
    assert store.flush()
    query = as_query("params.i >= 3", None, "run_id", None)
    selected = index.select(query, None)
    assert selected is not None
    assert [d["run_id"] for d in selected] == ["r00003", "r00004", "r00005"]
    assert selected == store.query_runs(where=query)
    assert index.select(query, "exp:other") == []  # outside the store's scope
    assert index.count(None, None) == store.count_runs() == 6
    assert index.count("exp:other", None) == 0
    table = index.table(None, None)
    assert table is not None and table["n"] == 6
    assert index.rebuild() == 6
    assert index.refresh() == 0  # nothing missed
