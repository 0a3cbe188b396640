"""Background index writes: callers never wait for the database, nothing is lost."""

from __future__ import annotations

import threading
import time

from pg_helpers import file_docs, in_child_that_never_sends, index_rows, records

from metalab.store._postgres import _flusher


def test_writes_do_not_wait_for_a_slow_index(make_store, pg_conn, pg_schema, file_root,
                                              monkeypatch) -> None:
    store = make_store("exp:1")
    store.index.ping()
    real_apply = store._index.apply
    gate = threading.Event()

    def slow_apply(**kw):
        gate.wait(5)  # the database "hangs" until the writes are done
        real_apply(**kw)

    monkeypatch.setattr(store._index, "apply", slow_apply)
    t = time.perf_counter()
    for r in records("exp:1", 40):
        store.put_run_record(r)
    assert time.perf_counter() - t < 3.0  # never waited for the 5 s gate
    assert len(file_docs(file_root, "exp:1")) == 40  # files are written when put_* returns
    gate.set()
    assert store.flush()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")


def test_later_change_of_a_run_wins_within_a_batch(make_store, pg_conn, pg_schema,
                                                    file_root, monkeypatch) -> None:
    monkeypatch.setattr(_flusher, "FLUSH_DELAY", 0.2)  # everything below lands in one batch
    store = make_store("exp:1")
    recs = records("exp:1", 3)
    for r in recs:
        store.put_run_record(r)
    store.delete_run(recs[0].run_id)
    store.put_derived(recs[1].run_id, {"acc": 1.0})
    store.put_run_record(recs[2].replace(metrics={"loss": 0.25}))
    assert len(store.list_run_records()) == 2  # a read sends the queue first
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert index_rows(pg_conn, pg_schema)[("exp:1", recs[2].run_id)]["metrics"] == {"loss": 0.25}


def _child_dies_before_flush(parent) -> None:
    """A forked child writes 25 runs whose index changes never leave it, then dies hard."""

    def write() -> None:
        child = parent.config.connect()
        for r in records("exp:1", 25):
            child.put_run_record(r)

    in_child_that_never_sends(write)


def test_process_killed_before_flush_loses_nothing(make_store, pg_conn, pg_schema,
                                                   file_root) -> None:
    make_store("exp:1").index.ping()  # the index tables exist before the sweep
    parent = make_store("exp:1")
    _child_dies_before_flush(parent)
    assert index_rows(pg_conn, pg_schema) == {}  # the child sent nothing
    assert parent.index_is_behind()  # its orphaned in-flight log says so
    # so reads use the files (a deferred store: it never starts a catch-up itself)
    assert len(make_store("exp:1", index_mode="deferred").list_run_records()) == 25
    report = parent.reconcile()
    assert report["replayed"] == 25
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert not parent.index_is_behind()
    assert not any((file_root / ".metalab-index").rglob("*.log"))  # adopted and removed


def test_a_read_starts_the_catch_up_of_a_dead_writers_log(make_store, pg_conn, pg_schema,
                                                          file_root) -> None:
    make_store("exp:1").index.ping()
    parent = make_store("exp:1")
    _child_dies_before_flush(parent)
    reader = make_store("exp:1")
    assert len(reader.list_run_records()) == 25  # from the files, and a catch-up starts
    deadline = time.monotonic() + 10
    while index_rows(pg_conn, pg_schema) != file_docs(file_root, "exp:1"):
        assert time.monotonic() < deadline, "the index never caught up without reconcile()"
        time.sleep(0.1)
    assert not reader.index_is_behind()
    assert not any((file_root / ".metalab-index").rglob("*.log"))


def test_close_sends_queued_changes_and_removes_the_log(make_store, pg_conn, pg_schema,
                                                        file_root) -> None:
    store = make_store("exp:1")
    for r in records("exp:1", 10):
        store.put_run_record(r)
    store.close()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert not any((file_root / ".metalab-index").rglob("*.log"))


def test_index_keeps_the_record_file_bytes(make_store, pg_conn, pg_schema, file_root) -> None:
    """The writer serialises a record once: the index holds exactly the file's text."""
    from psycopg import sql

    store = make_store("exp:1")
    recs = records("exp:1", 3)
    for r in recs:
        store.put_run_record(r)
    store.put_run_record(recs[0].replace(metrics={"loss": 0.5, "note": "é\u2028"}))
    assert store.flush()
    texts = dict(pg_conn.execute(sql.SQL("SELECT run_id, record FROM {}").format(
        sql.Identifier(pg_schema, "run_records"))).fetchall())
    folder = next(p for p in file_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    on_disk = {p.stem: p.read_text("utf-8") for p in (folder / "runs").glob("*.json")}
    assert texts == on_disk and len(texts) == 3
    assert store.query_runs(where="metrics.loss == 0.5")[0]["run_id"] == recs[0].run_id


def test_flusher_survives_a_journal_that_cannot_be_written(make_store, pg_conn, pg_schema,
                                                           file_root, monkeypatch) -> None:
    """A send that fails while the journal cannot be written either must not stop the
    background thread: flush() returns at once, later changes are still sent, and the
    failed one stays listed as in flight (reads use the files)."""
    store = make_store()
    (first, second) = records("exp:1", 2)
    real_apply = store._index.apply

    def failing_apply(*args, **kwargs):
        raise RuntimeError("index broke")

    def failing_mark(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(store._index, "apply", failing_apply)
    monkeypatch.setattr(store._journal, "mark_behind", failing_mark)
    store.put_run_record(first)
    t0 = time.monotonic()
    store.flush(timeout=20)
    assert time.monotonic() - t0 < 5  # it did not wait out its timeout
    assert store._journal.in_flight("exp:1")  # the unsent change is still announced
    assert {r["run_id"] for r in store.query_runs()} == {first.run_id}  # from the files

    monkeypatch.setattr(store._index, "apply", real_apply)
    store.put_run_record(second)
    assert store.flush(timeout=20)
    assert ("exp:1", second.run_id) in index_rows(pg_conn, pg_schema, "exp:1")  # still sending
