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


def test_offsets_move_up_to_the_first_unsent_change_of_a_busy_writer(
        make_store, pg_conn, pg_schema, file_root, monkeypatch) -> None:
    """While a writer still has changes in flight, its offsets move past what it
    sent, up to its first unsent change (so a crash then costs a catch-up of the
    unsent changes only, not of the whole sweep)."""
    import threading

    from metalab.store._changes import read_changes

    store = make_store("exp:1")
    for r in records("exp:1", 10):
        store.put_run_record(r)
    assert store.flush()
    gate = threading.Event()
    real_apply = store._index.apply
    monkeypatch.setattr(store._index, "apply", lambda **kw: (gate.wait(10), real_apply(**kw)))
    try:
        for r in records("exp:1", 5, start=10):
            store.put_run_record(r)
        assert not store._advance("exp:1")  # changes in flight: not to the end
        offsets = store._journal.read_offsets("exp:1")
        assert offsets is not None
        folder = store.get_working_directory()
        after = read_changes(folder, offsets.logs, offsets.seen)
        assert after.reason is None
        assert after.changed["runs"] == {r.run_id for r in records("exp:1", 5, start=10)}
    finally:
        gate.set()
    assert store.flush()
    deadline = time.monotonic() + 10
    while not store._advance("exp:1"):  # (the flusher thread may hold the lock a moment)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    offsets = store._journal.read_offsets("exp:1")
    assert offsets is not None
    assert read_changes(folder, offsets.logs, offsets.seen).changed["runs"] == set()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")


def test_a_replaced_in_flight_log_loses_no_listing(make_store, pg_conn, pg_schema, file_root,
                                                   monkeypatch) -> None:
    """The in-flight log is replaced by a fresh one as it grows: the experiments
    with changes in flight are listed in the fresh one before the old one goes."""
    import threading

    from metalab.store._postgres import _flusher

    monkeypatch.setattr(_flusher, "LOG_ROTATE_BYTES", 1)  # a fresh log at every listing
    store = make_store("exp:1")
    gate = threading.Event()
    real_apply = store._index.apply
    monkeypatch.setattr(store._index, "apply", lambda **kw: (gate.wait(10), real_apply(**kw)))
    logs = file_root / ".metalab-index"
    opened = []
    real_open = store._journal.open_inflight_log
    monkeypatch.setattr(store._journal, "open_inflight_log",
                        lambda: opened.append(1) or real_open())
    try:
        for i, r in enumerate(records("exp:1", 30)):
            store.put_run_record(r)
            assert store._journal.in_flight("exp:1")
            if i == 4:  # the first 5 form a batch of their own (it waits at the gate)
                time.sleep(3 * _flusher.FLUSH_DELAY)
        assert len(list(logs.rglob("inflight/*.log"))) == 1
    finally:
        gate.set()
    assert store.flush()
    assert len(opened) > 1  # replaced as batches were settled
    store.close()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert not list(logs.rglob("inflight/*.log"))
