from __future__ import annotations

from pg_helpers import file_docs, index_rows, records


def test_write_read_equal(make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1")
    for r in records("exp:1", 20):
        store.put_run_record(r)
    store.put_derived("r00001", {"acc": 1.0})
    # a bulk read first sends this process's queued index changes: it reads its own writes
    assert len(store.list_run_records()) == 20
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
