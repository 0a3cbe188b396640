"""The FileStore catalog: incremental refresh, concurrent writers, fallback, rebuild."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from query_support import make_doc, wait_for_a_later_tick, write_doc

from metalab import StoreError
from metalab.store import FileStore
from metalab.store._base import Store
from metalab.store._index import Catalog, _catalog, _catalog_rows

Q = "params.depth >= 2 and metrics.score < 1.5"


def test_first_query_builds_the_catalog_later_ones_read_only_changes(
    fstore: FileStore, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fstore.query_runs(where=Q, columns=["metrics"])
    assert len(reads) == 20
    assert os.path.exists(os.path.join(fstore.get_working_directory(), ".catalog",
                                       "catalog.sqlite"))
    reads.clear()
    assert fstore.query_runs(where=Q, columns=["metrics"]) == first
    assert reads == []  # nothing changed: no file read
    assert len(fstore.query_runs(where=Q)) == len(first)
    assert sorted(reads) == sorted(f"runs/{d['run_id']}.json" for d in first)  # whole documents
    write_doc(fstore, make_doc(30, params={"depth": 4}, metrics={"score": 0.1}))
    write_doc(fstore, make_doc(3, params={"depth": 0}))  # rewritten: no longer matches
    wait_for_a_later_tick(fstore)  # a deletion by hand, in a later tick than the logged writes
    os.unlink(os.path.join(fstore.get_working_directory(), "runs", "r004.json"))
    reads.clear()
    got = fstore.query_runs(where=Q, columns=["params.depth"])
    assert sorted(reads) == ["runs/r003.json", "runs/r030.json"]
    assert got == Store.query_runs(fstore, where=Q, columns=["params.depth"])
    ids = [d["run_id"] for d in got]
    assert "r030" in ids and "r003" not in ids and "r004" not in ids


@pytest.mark.parametrize("folder_fd", [True, False], ids=["folder-fd", "paths"])
def test_refresh_reads_the_same_files_with_or_without_a_folder_descriptor(
    fstore: FileStore, reads: list[str], monkeypatch: pytest.MonkeyPatch, folder_fd: bool
) -> None:
    if not folder_fd:  # (a platform without dir_fd support for os.open)
        monkeypatch.setattr(_catalog.os, "supports_dir_fd", set())
    fstore.query_runs(where=Q)
    write_doc(fstore, make_doc(31, params={"depth": 5}, metrics={"score": 0.2}))
    fstore.put_derived("r031", {"acc": 0.5})
    os.unlink(os.path.join(fstore.get_working_directory(), "runs", "r002.json"))
    write_doc(fstore, make_doc(2, params={"depth": 5}))  # deleted, then written again
    reads.clear()
    got = fstore.query_runs(where="derived.acc >= 0.5 or params.depth = 5",
                            columns=["params.depth", "derived.acc"])
    assert sorted(reads) == ["derived/r031.json", "runs/r002.json", "runs/r031.json"]
    assert [(d["run_id"], d["params"], d["derived"]) for d in got] == [
        ("r002", {"depth": 5}, {}), ("r031", {"depth": 5}, {"acc": 0.5})]


def test_derived_files_are_followed(fstore: FileStore, reads: list[str]) -> None:
    assert fstore.query_runs(where="metrics.score >= 0", columns=["status"]) != []
    fstore.put_derived("r005", {"acc": 0.9})
    reads.clear()
    got = fstore.query_runs(where="derived.acc > 0.5", columns=["derived.acc"])
    assert reads == ["derived/r005.json"]
    assert [(d["run_id"], d["derived"]) for d in got] == [("r005", {"acc": 0.9})]


def test_unchanged_folder_skips_the_listing(fstore: FileStore, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setattr(_catalog, "DIR_MTIME_MARGIN_NS", 0)
    fstore.query_runs(where=Q)
    calls: list[str] = []
    real = _catalog._listing
    monkeypatch.setattr(_catalog, "_listing", lambda p: calls.append(p) or real(p))
    fstore.query_runs(where=Q)
    assert calls == []
    write_doc(fstore, make_doc(40))
    assert "r040" in [d["run_id"] for d in fstore.query_runs()]
    assert calls == []  # the change log named the new file: still no listing
    wait_for_a_later_tick(fstore)
    write_doc(fstore, make_doc(41), logged=False)  # copied in by hand
    assert "r041" in [d["run_id"] for d in fstore.query_runs()]
    assert calls  # runs/ changed after the newest log line: listed again


def test_queries_during_concurrent_writes_stay_correct(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    write_doc(store, make_doc(0))
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        other = FileStore(str(tmp_path / "s"), experiment_id="q:1")
        i = 1
        while not stop.is_set() and i < 400:
            write_doc(other, make_doc(i, metrics={"score": float(i)}))
            write_doc(other, make_doc(0, metrics={"score": float(i)}))  # a run rewritten
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = 0
        for _ in range(30):
            before = len(written)
            got = store.query_runs(where="metrics.score >= 0", columns=["metrics.score"])
            ids = [d["run_id"] for d in got]
            assert len(ids) == len(set(ids))
            assert len(ids) >= before + 1  # every run written before the query is there
            assert len(ids) >= seen
            seen = len(ids)
            for d in got:  # every row is a real state of its file
                assert d["metrics"]["score"] >= 0
    finally:
        stop.set()
        t.join()
    assert store.query_runs(where=Q) == Store.query_runs(store, where=Q)
    final = store.query_runs(columns=["metrics.score"])
    assert final == Store.query_runs(store, columns=["metrics.score"])


def test_an_unwritable_catalog_falls_back_to_a_scan(fstore: FileStore) -> None:
    expected = Store.query_runs(fstore, where=Q, order_by="-metrics.score")
    # a file where the catalog folder should be: the catalog cannot be created
    Path(fstore.get_working_directory(), ".catalog").write_text("not a folder")
    assert fstore.query_runs(where=Q, order_by="-metrics.score") == expected
    with pytest.raises(StoreError, match="cannot rebuild the query catalog"):
        fstore.reindex_catalog()


def test_a_held_lock_falls_back_to_a_scan(fstore: FileStore, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setattr(_catalog, "LOCK_WAIT_S", 0.1)
    catalog = Catalog(fstore.get_working_directory())
    os.makedirs(catalog.dir)
    Path(catalog.lock_path).write_text("someone else")
    t0 = time.monotonic()
    assert fstore.query_runs(where=Q) == Store.query_runs(fstore, where=Q)
    assert time.monotonic() - t0 < 5
    # a lock left by a dead process is taken over once stale
    old = time.time() - _catalog.STALE_LOCK_S - 10
    os.utime(catalog.lock_path, (old, old))
    assert catalog.refresh() == 20
    assert not os.path.exists(catalog.lock_path)


def test_a_damaged_catalog_is_rebuilt(fstore: FileStore) -> None:
    expected = fstore.query_runs(where=Q)
    catalog = Catalog(fstore.get_working_directory())
    Path(catalog.path).write_bytes(b"garbage" * 100)
    assert fstore.query_runs(where=Q) == expected


def test_reindex_rebuilds_from_the_files(fstore: FileStore) -> None:
    fstore.query_runs()
    assert fstore.reindex_catalog() == 20


def test_corrupt_run_files_are_skipped(fstore: FileStore) -> None:
    Path(fstore.get_working_directory(), "runs", "r999.json").write_text("{broken")
    assert len(fstore.query_runs()) == 20
    assert fstore.query_runs(columns=["params"]) == Store.query_runs(fstore, columns=["params"])


def test_collections_query_each_experiment(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    for eid in ("a:1", "b:1"):
        st = FileStore(root, experiment_id=eid)
        for i in range(3):
            write_doc(st, make_doc(i, experiment_id=eid))
    coll = FileStore(root)
    assert [d["experiment_id"] for d in coll.query_runs(where="params.depth < 2")] == [
        "a:1", "a:1", "b:1", "b:1"]
    assert len(coll.query_runs("b:1", "params.depth < 2")) == 2
    assert coll.reindex_catalog() == 6


def test_catalog_answers_equal_the_scan_for_every_kind_of_cell(tmp_path: Path) -> None:
    """Values of every JSON kind, runs whose names all differ (more shapes than one
    batch statement takes), integers beyond 64 bits, odd tags and files that are
    not run documents: the catalog answers exactly like a scan of the files."""
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    values: list[Any] = [True, False, 0, 1, -(2**63), 2**63 - 1, 1.0, 2.5,
                         "1", "", "é", None, [1, True, "a"], {"k": [1, {"z": False}]}]
    tag_lists: list[Any] = [["a"], [1], [True], ["1"], [1.0], [None, "b"], "x", []]
    n_runs = _catalog_rows._MAX_SHAPES + 8
    for i in range(n_runs):
        params = {f"p{i}": values[i % len(values)], "v": values[(i * 7) % len(values)],
                  "flag": i % 3 == 0}
        metrics = {"m": values[(i * 3) % len(values)]}
        if i % 5 == 0:  # read as ints SQLite cannot hold: stored as REAL, like encode()
            metrics["big"] = 2**63 if i % 10 else 2**64 - 1
        odd_times = {1: {"started_at": "2026-01-01T00:00:01"},  # naive: UTC
                     2: {"started_at": "not a time", "heartbeat_at": 5},
                     3: {"finished_at": "2026-01-01T00:00:09+02:00", "heartbeat_at": ""},
                     # running, started long ago, heartbeat set but not a time: not lost
                     4: {"status": "running", "heartbeat_at": "garbage"},
                     5: {"status": "running", "heartbeat_at": 7}}
        write_doc(store, make_doc(i, params=params, metrics=metrics,
                                  tags=tag_lists[i % len(tag_lists)], **odd_times.get(i, {})))
    runs = os.path.join(store.get_working_directory(), "runs")
    for name, data in (("bad1", b"[1, 2]"), ("bad2", b"{not json")):
        with open(os.path.join(runs, f"{name}.json"), "wb") as fh:
            fh.write(data)

    def same(where: str | None, columns: list[str]) -> None:
        got = store.query_runs(where=where, columns=columns, order_by=["run_id"])
        assert got == Store.query_runs(store, where=where, columns=columns, order_by=["run_id"])

    for _ in range(2):  # built from a full listing, then after logged rewrites
        same(None, ["params", "metrics.m", "tags"])
        same("params.v = true", ["params.v"])
        same("params.v > 1", ["params.v", "metrics.m"])
        same("params.flag = false and metrics.m >= 0", ["params.flag"])
        same("params.v contains 1", ["params.v"])
        same("tags contains '1'", ["tags"])
        same("started_at < '2026-01-01T00:00:02Z' or finished_at is not null",
             ["started_at", "finished_at", "status"])
        same("status = 'running' or status = 'lost'", ["status"])
        for i in range(0, n_runs, 3):
            write_doc(store, make_doc(i, params={"v": values[i % len(values)], "new": i},
                                      metrics={"m": values[i % len(values)]}))
    same("metrics.big > 4611686018427387904", ["params.v"])
    big = store.query_runs(where="metrics.big > 0", columns=["metrics.big"])
    exact = Store.query_runs(store, where="metrics.big > 0", columns=["metrics.big"])
    assert sorted(r["metrics"]["big"] for r in big) == sorted(
        float(r["metrics"]["big"]) for r in exact)
    assert {type(r["metrics"]["big"]) for r in big} == {float} and len(big) == 5


def _raw(fstore: FileStore, sql: str) -> list[tuple[Any, ...]]:
    """Rows read from the catalog file itself (not through the catalog's code)."""
    import sqlite3

    path = os.path.join(fstore.get_working_directory(), ".catalog", "catalog.sqlite")
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _keys_match_rows(fstore: FileStore) -> None:
    """Each merged row of ``runs`` has one key (CRC-32 of its name, signed), nothing else;
    every row carries the key of its name."""
    import zlib

    rows = _raw(fstore, "SELECT rid, file FROM runs WHERE rid <= "
                        "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'cold:runs')")
    assert sorted(_raw(fstore, "SELECT h, rid FROM runs_keys")) == sorted(
        (zlib.crc32(f.encode()) - 2**31, rid) for rid, f in rows)
    assert all(h == zlib.crc32(f.encode()) - 2**31
               for f, h in _raw(fstore, "SELECT file, h FROM runs"))


def test_small_changes_are_appended_and_merged_later(
    fstore: FileStore, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh only appends rows (cheap with random run ids on big stores:
    no index over the names is touched); a merge keeps each file's newest row
    and gives it a key."""
    monkeypatch.setattr(_catalog, "_MERGE_MIN", 5)
    monkeypatch.setattr(_catalog, "_MERGE_MAX", 5)
    from metalab.store._changes import note_change

    def files() -> list[str]:
        return sorted(f[:-5] for f in os.listdir(os.path.join(fstore.get_working_directory(),
                                                               "runs")))

    def cold() -> int:
        return int(_raw(fstore, "SELECT value FROM meta WHERE key = 'cold:runs'")[0][0])

    first = fstore.query_runs(where=Q, columns=["params.depth"])
    # 20 files (>= the threshold): appended, then merged at once
    assert _raw(fstore, "SELECT file FROM runs ORDER BY file") == [(f,) for f in files()]
    assert cold() == _raw(fstore, "SELECT max(rid) FROM runs")[0][0]
    _keys_match_rows(fstore)
    assert first == Store.query_runs(fstore, where=Q, columns=["params.depth"])
    merged = _raw(fstore, "SELECT * FROM runs ORDER BY rid")

    write_doc(fstore, make_doc(3, params={"depth": 3}, metrics={"score": 0.0}))  # rewritten
    write_doc(fstore, make_doc(50, params={"depth": 2}, metrics={"score": 0.5}))  # new
    os.unlink(os.path.join(fstore.get_working_directory(), "runs", "r007.json"))
    note_change(fstore.get_working_directory(), "r", "r007")
    reads.clear()
    got = fstore.query_runs(where=Q, columns=["params.depth"])
    assert sorted(reads) == ["runs/r003.json", "runs/r007.json", "runs/r050.json"]
    assert got == Store.query_runs(fstore, where=Q, columns=["params.depth"])
    assert {d["run_id"] for d in got} >= {"r003", "r050"} and "r007" not in str(got)
    # the merged rows are untouched; two rows and a tombstone were appended
    assert _raw(fstore, f"SELECT * FROM runs WHERE rid <= {cold()} ORDER BY rid") == merged
    assert _raw(fstore, f"SELECT file, bad FROM runs WHERE rid > {cold()} ORDER BY file") == [
        ("r003", 0), ("r007", 2), ("r050", 0)]

    for i in (60, 61):  # six rows appended since the merge: merged again
        write_doc(fstore, make_doc(i, params={"depth": 4}))
    # r003 again: the newest of its two appended rows is the one kept
    write_doc(fstore, make_doc(3, params={"depth": 5}, metrics={"score": 0.0}))
    got = fstore.query_runs(where=Q, columns=["params.depth"])
    assert got == Store.query_runs(fstore, where=Q, columns=["params.depth"])
    assert cold() == _raw(fstore, "SELECT max(rid) FROM runs")[0][0]
    # one row per file on disk (the old r003 and r007 rows and the tombstone are gone)
    assert _raw(fstore, "SELECT file FROM runs ORDER BY file") == [(f,) for f in files()]
    _keys_match_rows(fstore)
    assert _raw(fstore, "SELECT value FROM meta WHERE key = 'rows:runs'") == [
        (str(len(files())),)]
    depth = _raw(fstore, "SELECT f.col FROM fields f WHERE f.ns = 'params' AND f.name = 'depth'")
    assert _raw(fstore, f"SELECT {depth[0][0]} FROM runs WHERE file = 'r003'") == [(5,)]


def test_names_sharing_a_key_are_told_apart(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name hashed to one key: a merge still replaces exactly the row of
    the file rewritten or deleted, never another file's."""
    monkeypatch.setattr(_catalog_rows, "_hashes", lambda names: [7] * len(list(names)))
    monkeypatch.setattr(_catalog, "_MERGE_MIN", 3)
    monkeypatch.setattr(_catalog, "_MERGE_MAX", 3)
    from metalab.store._changes import note_change

    def same() -> None:
        cols = ["params.depth", "metrics.score"]
        assert fstore.query_runs(where=Q, columns=cols) == Store.query_runs(
            fstore, where=Q, columns=cols)
        assert sorted(d["run_id"] for d in fstore.query_runs()) == sorted(
            d["run_id"] for d in Store.query_runs(fstore))

    same()  # 20 runs merged, all under key 7
    for step in range(3):
        write_doc(fstore, make_doc(step, params={"depth": 9}, metrics={"score": 0.1}))
        write_doc(fstore, make_doc(40 + step, params={"depth": 3}))
        os.unlink(os.path.join(fstore.get_working_directory(), "runs", f"r{10 + step:03d}.json"))
        note_change(fstore.get_working_directory(), "r", f"r{10 + step:03d}")
        same()
    rows = _raw(fstore, "SELECT rid, file FROM runs ORDER BY file")
    assert [f for _, f in rows] == sorted(f[:-5] for f in os.listdir(
        os.path.join(fstore.get_working_directory(), "runs")))
    assert sorted(_raw(fstore, "SELECT h, rid FROM runs_keys")) == sorted(
        (7, rid) for rid, _ in rows)


def test_runs_written_after_a_merge_that_dropped_the_last_row_are_seen(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge whose last appended row is a tombstone deletes the table's top
    rows; rids are then handed out again from below, and the catalog must
    still tell the new rows from the merged ones."""
    monkeypatch.setattr(_catalog, "_MERGE_MIN", 1)
    monkeypatch.setattr(_catalog, "_MERGE_MAX", 1)
    from metalab.store._changes import note_change

    cols = ["params.depth"]
    assert fstore.query_runs(where=Q, columns=cols) == Store.query_runs(fstore, where=Q, columns=cols)
    top = _raw(fstore, "SELECT max(rid) FROM runs")[0][0]
    last = _raw(fstore, f"SELECT file FROM runs WHERE rid = {top}")[0][0]
    os.unlink(os.path.join(fstore.get_working_directory(), "runs", f"{last}.json"))
    note_change(fstore.get_working_directory(), "r", last)
    assert last not in {d["run_id"] for d in fstore.query_runs()}  # tombstone, merged
    assert _raw(fstore, "SELECT max(rid) FROM runs")[0][0] < top
    write_doc(fstore, make_doc(70, params={"depth": 3}, metrics={"score": 0.5}))  # a reused rid
    write_doc(fstore, make_doc(71, params={"depth": 3}, metrics={"score": 0.5}))
    got = fstore.query_runs(where=Q, columns=cols)
    assert {"r070", "r071"} <= {d["run_id"] for d in got}
    assert got == Store.query_runs(fstore, where=Q, columns=cols)
    _keys_match_rows(fstore)
