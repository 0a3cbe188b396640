"""The catch-up follows the FileStore's change logs: incremental, shared, nothing lost."""

from __future__ import annotations

import os
import time

from pg_helpers import file_docs, in_child_that_never_sends, index_rows, records

from metalab.store import PostgresStore


def test_catch_up_reads_only_the_changes_after_its_offsets(make_store, pg_conn, pg_schema,
                                                           file_root) -> None:
    """A sweep that went well moves the offsets; the writes of a writer killed later
    are all the next catch-up reads (no listing of the 40 runs before them)."""
    store = make_store("exp:1")
    for r in records("exp:1", 40):
        store.put_run_record(r)
    store.close()  # sent, and the offsets moved to the end of the logs
    parent = make_store("exp:1")
    assert not parent.index_is_behind()

    def killed_writer() -> None:
        child = parent.config.connect()
        for r in records("exp:1", 5, start=40):
            child.put_run_record(r)
        child.put_derived("r00003", {"acc": 0.5})

    in_child_that_never_sends(killed_writer)
    assert parent.index_is_behind()
    report = parent.reconcile()
    assert report["replayed"] == 6  # 5 new runs and 1 changed derived file, nothing else
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    found = parent.query_runs(where="derived.acc == 0.5", columns=["run_id"])
    assert [d["run_id"] for d in found] == ["r00003"]
    assert not parent.index_is_behind()


def test_a_change_the_logs_miss_is_found_by_a_listing(make_store, pg_conn, pg_schema,
                                                      file_root, monkeypatch) -> None:
    """A writer killed between its rename and its log line: the folder changed after
    the newest line, so the catch-up lists the folder instead of trusting the logs."""
    from metalab.store import _file

    store = make_store("exp:1")
    for r in records("exp:1", 10):
        store.put_run_record(r)
    store.close()
    parent = make_store("exp:1")
    time.sleep(0.05)  # the unlogged rename gets a later folder mtime than the last line

    def unlogged_writer() -> None:
        monkeypatch.setattr(_file, "note_change", lambda *a: None)  # dies before its line
        child = parent.config.connect()
        for r in records("exp:1", 3, start=10):
            child.put_run_record(r)

    in_child_that_never_sends(unlogged_writer)
    parent.reconcile()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert len(index_rows(pg_conn, pg_schema)) == 13


def test_several_processes_catch_up_at_once(make_store, pg_conn, pg_schema,
                                            file_root) -> None:
    """Three processes catch the same experiments up at the same moment: each change
    reaches the index, none is lost, and the journal ends empty."""
    make_store("exp:1").index.ping()
    for eid in ("exp:1", "exp:2"):
        writer = make_store(eid, index_mode="deferred")  # marks behind, never sends
        for r in records(eid, 60):
            writer.put_run_record(r)
        writer.close()
    assert make_store(None).index_is_behind()
    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                PostgresStore(make_store(None).config).catch_up()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
    for eid in ("exp:1", "exp:2"):
        assert index_rows(pg_conn, pg_schema, eid) == file_docs(file_root, eid)
    assert not make_store(None).index_is_behind()


def test_offsets_never_pass_a_change_that_was_not_sent(make_store, pg_conn, pg_schema,
                                                       file_root) -> None:
    """Sent writes of one experiment move its offsets; deferred writes of another
    are read by the catch-up all the same."""
    sweep = make_store("exp:1")
    for r in records("exp:1", 20):
        sweep.put_run_record(r)
    sweep.close()
    other = make_store("exp:2", index_mode="deferred")
    for r in records("exp:2", 4):
        other.put_run_record(r)
    sweep = make_store("exp:1")
    for r in records("exp:1", 5, start=20):
        sweep.put_run_record(r)
    assert sweep.flush()
    # the 4 deferred runs of exp:2 at most (its flusher may have caught up already)
    assert sweep.catch_up() in (0, 4)
    assert not other.index_is_behind() and not sweep.index_is_behind()
    assert index_rows(pg_conn, pg_schema, "exp:2") == file_docs(file_root, "exp:2")
    assert index_rows(pg_conn, pg_schema, "exp:1") == file_docs(file_root, "exp:1")
