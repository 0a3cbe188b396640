"""A PostgresStore opened read-only writes nothing: no file, no index row, no catch-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pg_helpers import index_rows, records

from metalab.store import ReadOnlyStoreError, parse_to_config


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime)
    return out


def test_read_only_answers_from_the_files_and_starts_no_catch_up(
    make_store, pg_conn, pg_schema, file_root
):
    writer = make_store("exp:1", index_mode="deferred")  # journals, never writes the index
    for r in records("exp:1", 12):
        writer.put_run_record(r)
    writer.close()
    assert index_rows(pg_conn, pg_schema, "exp:1") == {}
    before = _tree(file_root)

    reader = make_store("exp:1", read_only=True)
    assert reader.read_only and reader.index_is_behind()
    found = reader.query_runs("exp:1", "params.i >= 6")
    assert sorted(d["run_id"] for d in found) == sorted(r.run_id for r in records("exp:1", 12)[6:])
    assert len(reader.list_run_records()) == 12
    for refused in (reader.catch_up, reader.reconcile,
                    lambda: reader.create_field_index("params.i"),
                    lambda: reader.put_run_record(records("exp:1", 1, start=50)[0]),
                    lambda: reader.rebuild_index()):
        with pytest.raises(ReadOnlyStoreError):
            refused()
    reader.close()
    # nothing written: the index is still empty, the files and the journal unchanged
    assert index_rows(pg_conn, pg_schema, "exp:1") == {}
    assert _tree(file_root) == before


def test_read_only_from_the_locator(pg_url, pg_schema, file_root):
    cfg = parse_to_config(f"{pg_url}?file_root={file_root}&schema={pg_schema}&read_only=true")
    assert cfg.read_only and cfg.connect().read_only
    assert not parse_to_config(f"{pg_url}?file_root={file_root}&read_only=no").read_only
