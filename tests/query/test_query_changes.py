"""The catalog refresh from the FileStore change logs (``.changes/``).

A refresh after N new runs must read just those N files and never list the
folder; every change the logs cannot vouch for (files copied in or deleted by
hand, a log replaced, truncated or missing, a writer that could not log) must
fall back to a full listing, so answers always equal a scan of the files.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from query_support import make_doc, wait_for_a_later_tick, write_doc

from metalab.model import RunRecord, Status
from metalab.store import FileStore, export_store
from metalab.store._base import Store
from metalab.store._changes import CHANGES_DIR, HEADER, UNLOGGED
from metalab.store._index import Catalog, _catalog


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Folders the catalog listed in full."""
    calls: list[str] = []
    real = _catalog._listing

    def counting(path: str) -> Any:
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(_catalog, "_listing", counting)
    return calls


def record(i: int, eid: str = "q:1", score: float | None = None) -> RunRecord:
    return RunRecord(run_id=f"r{i:03d}", experiment_id=eid, status=Status.SUCCESS,
                     params={"depth": i % 5}, metrics={"score": i / 10 if score is None else score})


def log_files(store: FileStore) -> list[Path]:
    return sorted(Path(store.get_working_directory(), CHANGES_DIR).glob("*.log"))


def ids(store: FileStore, **kw: Any) -> list[str]:
    return sorted(d["run_id"] for d in store.query_runs(columns=["status"], **kw))


def scan_ids(store: FileStore) -> list[str]:
    return sorted(d["run_id"] for d in Store.query_runs(store, columns=["status"]))


def test_store_writes_log_one_line_per_change(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    store.put_run_record(record(1))
    store.put_derived("r001", {"acc": 0.5})
    store.put_run_record(record(1, score=9.0))
    store.delete_run("r001")
    store.delete_run("r002")  # nothing to delete: no line
    (log,) = log_files(store)
    lines = log.read_bytes().split(b"\n")
    assert lines[0].startswith(HEADER) and len(lines[0]) > len(HEADER) + 8
    assert lines[1:] == [b"r r001", b"d r001", b"r r001", b"r r001", b"d r001", b""]


def test_refresh_after_new_runs_reads_only_those_files(
    fstore: FileStore, reads: list[str], listings: list[str]
) -> None:
    catalog = Catalog(fstore.get_working_directory())
    assert catalog.refresh() == 20 and catalog.last_full  # a new catalog lists once
    listings.clear()
    reads.clear()
    for i in range(30, 35):
        fstore.put_run_record(record(i))
    fstore.put_run_record(record(3, score=7.5))  # a rewrite
    fstore.put_derived("r031", {"acc": 0.9})
    assert catalog.refresh() == 7
    assert not catalog.last_full and catalog.last_reason is None
    assert listings == []
    assert sorted(reads) == ["derived/r031.json", "runs/r003.json", "runs/r030.json",
                             "runs/r031.json", "runs/r032.json", "runs/r033.json",
                             "runs/r034.json"]
    reads.clear()
    assert catalog.refresh() == 0 and reads == [] and listings == []
    got = fstore.query_runs(where="derived.acc > 0.5 or metrics.score > 7",
                            columns=["metrics.score", "derived.acc"])
    assert got == Store.query_runs(fstore, where="derived.acc > 0.5 or metrics.score > 7",
                                   columns=["metrics.score", "derived.acc"])
    assert [d["run_id"] for d in got] == ["r003", "r031"]
    assert listings == []
    fstore.delete_run("r031")  # logged deletions: no listing either
    assert "r031" not in ids(fstore) and listings == []
    assert ids(fstore) == scan_ids(fstore)


def test_run_copied_in_by_hand_is_found_by_a_full_listing(
    fstore: FileStore, listings: list[str]
) -> None:
    catalog = Catalog(fstore.get_working_directory())
    catalog.refresh()
    fstore.put_run_record(record(40))
    wait_for_a_later_tick(fstore)
    write_doc(fstore, make_doc(41), logged=False)  # e.g. rsync'ed in: no log line
    listings.clear()
    assert catalog.refresh() == 2  # r040 (named by the log) would be read anyway
    assert catalog.last_full and "runs/ changed after" in str(catalog.last_reason)
    assert listings == ["runs", "derived"]
    assert "r041" in ids(fstore) and ids(fstore) == scan_ids(fstore)


def test_file_deleted_by_hand_disappears(fstore: FileStore) -> None:
    assert "r004" in ids(fstore)
    wait_for_a_later_tick(fstore)
    os.unlink(os.path.join(fstore.get_working_directory(), "runs", "r004.json"))
    assert "r004" not in ids(fstore)
    assert ids(fstore) == scan_ids(fstore)


@pytest.mark.parametrize("damage", ["truncate", "replace", "delete_log", "delete_folder"])
def test_a_log_that_cannot_be_trusted_triggers_a_full_listing(
    fstore: FileStore, damage: str, listings: list[str]
) -> None:
    catalog = Catalog(fstore.get_working_directory())
    catalog.refresh()
    fstore.put_run_record(record(50))
    (log,) = log_files(fstore)
    if damage == "truncate":
        with open(log, "r+b") as fh:
            fh.truncate(len(log.read_bytes().split(b"\n")[0]) + 1)
    elif damage == "replace":
        log.write_bytes(HEADER + b"another\nr r050\n")
    elif damage == "delete_log":
        log.unlink()
    else:
        shutil.rmtree(log.parent)
    listings.clear()
    catalog.refresh()
    assert catalog.last_full and listings
    assert "r050" in ids(fstore) and ids(fstore) == scan_ids(fstore)
    # the store starts a new log (with a new id) and the catalog follows it again
    fstore.put_run_record(record(51))
    listings.clear()
    assert catalog.refresh() == 1 and not catalog.last_full and listings == []
    assert "r051" in ids(fstore)


def test_a_torn_last_line_is_read_once_complete(fstore: FileStore, reads: list[str]) -> None:
    catalog = Catalog(fstore.get_working_directory())
    catalog.refresh()
    write_doc(fstore, make_doc(60), logged=False)
    (log,) = log_files(fstore)
    with open(log, "ab") as fh:  # as if a writer of another NFS client were mid-line
        fh.write(b"r r06")
    reads.clear()
    assert catalog.refresh() == 0 and not catalog.last_full
    with open(log, "ab") as fh:
        fh.write(b"0\n")
    assert catalog.refresh() == 1 and reads == ["runs/r060.json"]
    assert not catalog.last_full


def test_only_log_lines_naming_a_file_are_read(fstore: FileStore, reads: list[str]) -> None:
    catalog = Catalog(fstore.get_working_directory())
    catalog.refresh()
    write_doc(fstore, make_doc(61), logged=False)
    write_doc(fstore, make_doc(62), logged=False)
    (log,) = log_files(fstore)
    with open(log, "ab") as fh:  # paths, temp files, other kinds, bad bytes: never read
        fh.write(b"r ../r061\nr .tmp-r061\nx r061\nr \nrr061\nr r06\x001\nr r\xff61\n"
                 b"r r061\nd r062\nr  r062\n")
    reads.clear()
    assert catalog.refresh() == 4 and not catalog.last_full
    assert sorted(reads) == ["derived/r062.json", "runs/ r062.json", "runs/r061.json",
                             "runs/r\ufffd61.json"]
    assert "r061" in ids(fstore)


def test_log_write_failure_never_fails_a_run_write(tmp_path: Path, listings: list[str]) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    store.put_run_record(record(0))
    catalog = Catalog(store.get_working_directory())
    catalog.refresh()
    # another process of the host holds no log open: simulate with a fresh folder state
    shutil.rmtree(Path(store.get_working_directory(), CHANGES_DIR))
    Path(store.get_working_directory(), CHANGES_DIR).write_text("not a folder")
    store.put_run_record(record(1))  # must not raise
    store.put_derived("r001", {"acc": 1.0})
    assert Path(store.get_working_directory(), "runs", UNLOGGED).exists()
    listings.clear()
    assert ids(store) == ["r000", "r001"]
    assert listings == ["runs", "derived"]
    assert Path(store.get_working_directory(), "runs", UNLOGGED).exists()  # left for other readers
    listings.clear()
    assert ids(store) == ["r000", "r001"]
    assert listings == ["runs", "derived"]  # (no .changes folder: listed every time)
    assert store.query_runs(where="derived.acc > 0", columns=["derived.acc"])[0]["run_id"] == "r001"


def test_a_log_failure_between_logged_writes_is_still_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer whose append fails leaves a marker, even if other writers log after it."""
    from metalab.store import _changes

    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    store.put_run_record(record(0))
    catalog = Catalog(store.get_working_directory())
    catalog.refresh()
    def failing(folder: str) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(_changes, "_fds", {})  # no log open yet in this process
        m.setattr(_changes, "_open_log", failing)
        store.put_run_record(record(1))
    store.put_run_record(record(2))  # logged, after the failed one
    catalog.refresh()
    assert catalog.last_full and "could not" in str(catalog.last_reason)
    assert ids(store) == ["r000", "r001", "r002"]
    store.put_run_record(record(3))
    catalog.refresh()  # the marker was handled: the logs vouch again (once per event)
    assert not catalog.last_full and ids(store) == ["r000", "r001", "r002", "r003"]


def test_store_without_changes_folder_works(fstore: FileStore, monkeypatch: pytest.MonkeyPatch,
                                            listings: list[str]) -> None:
    monkeypatch.setattr(_catalog, "DIR_MTIME_MARGIN_NS", 0)
    folder = fstore.get_working_directory()
    shutil.rmtree(os.path.join(folder, CHANGES_DIR))  # as written by an older version
    write_doc(fstore, make_doc(70), logged=False)
    catalog = Catalog(folder)
    catalog.refresh()
    assert catalog.last_full
    write_doc(fstore, make_doc(71), logged=False)
    assert catalog.refresh() == 1 and catalog.last_full
    assert "no .changes" in str(catalog.last_reason)
    listings.clear()
    assert catalog.refresh() == 0 and listings == []  # unchanged folder: no listing
    assert ids(fstore) == scan_ids(fstore)


def test_an_overdue_full_listing_catches_what_logs_missed(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = Catalog(fstore.get_working_directory())
    catalog.refresh()
    write_doc(fstore, make_doc(80), logged=False)  # hidden by the logged write just after
    fstore.put_run_record(record(81))
    catalog.refresh()
    monkeypatch.setattr(_catalog, "FULL_LISTING_EVERY_S", 0.0)
    catalog.refresh()
    assert catalog.last_full and "older than" in str(catalog.last_reason)
    assert "r080" in ids(fstore)


def test_unwritable_catalog_still_falls_back_with_logs(fstore: FileStore) -> None:
    fstore.put_run_record(record(90))
    Path(fstore.get_working_directory(), ".catalog").write_text("not a folder")
    assert ids(fstore) == scan_ids(fstore)
    assert "r090" in ids(fstore)


def _write_runs(root: str, start: int, n: int, done: Any = None) -> None:
    store = FileStore(root, experiment_id="q:1")
    for i in range(start, start + n):
        store.put_run_record(record(i))
        if done is not None:
            with done.get_lock():
                done.value += 1
        store.put_run_record(record(0, score=float(i)))  # one run rewritten by all


def test_concurrent_writer_processes_during_refreshes(tmp_path: Path) -> None:
    root = str(tmp_path / "s")
    store = FileStore(root, experiment_id="q:1")
    store.put_run_record(record(0))  # the parent holds the log open across the fork
    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("i", 1)  # runs whose put_run_record returned
    procs = [ctx.Process(target=_write_runs, args=(root, 1 + 200 * k, 200, done))
             for k in range(2)]
    for p in procs:
        p.start()
    catalog = Catalog(store.get_working_directory())
    seen = 0
    while any(p.is_alive() for p in procs):
        # every run whose write returned before the query is in its answer (a file
        # renamed into place whose log line is not appended yet may not be: its
        # write is still in progress, and the next refresh reads its line)
        before = done.value
        got = ids(store)
        assert len(got) >= before and len(got) >= seen
        seen = len(got)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = store.query_runs(columns=["metrics.score"])
    assert final == Store.query_runs(store, columns=["metrics.score"])
    assert len(final) == 401
    catalog.refresh()
    assert not catalog.last_full
    lines = b"".join(f.read_bytes() for f in log_files(store)).split(b"\n")
    assert len([ln for ln in lines if ln.startswith(b"r ")]) == 1 + 2 * 400


def test_concurrent_writer_threads_during_refreshes(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    store.put_run_record(record(0))
    returned = [1]  # runs whose put_run_record returned (one list append is atomic)

    def writer(start: int) -> None:
        other = FileStore(str(tmp_path / "s"), experiment_id="q:1")
        for i in range(start, start + 150):
            other.put_run_record(record(i))
            returned.append(1)

    threads = [threading.Thread(target=writer, args=(1 + 150 * k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            before = len(returned)  # every write that returned before the query is seen
            assert len(ids(store)) >= before
    finally:
        for t in threads:
            t.join()
    assert ids(store) == scan_ids(store) and len(ids(store)) == 451


def test_export_into_a_filestore_keeps_its_catalog_current(tmp_path: Path,
                                                           listings: list[str]) -> None:
    src = FileStore(str(tmp_path / "src"), experiment_id="q:1")
    dst = FileStore(str(tmp_path / "dst"), experiment_id="q:1")
    for i in range(5):
        src.put_run_record(record(i))
        dst.put_run_record(record(i))
    src.put_derived("r006", {"acc": 0.7})
    for i in range(5, 9):
        src.put_run_record(record(i))
    dst.put_run_record(record(1, score=3.0))  # differs: replaced by the copy
    catalog = Catalog(dst.get_working_directory())
    catalog.refresh()
    listings.clear()
    report = export_store(src, dst)
    assert report.runs == 5
    assert catalog.refresh() >= 5 and not catalog.last_full and listings == []
    assert ids(dst) == scan_ids(dst) == [f"r{i:03d}" for i in range(9)]
    assert dst.query_runs(where="derived.acc > 0", columns=["derived.acc"])[0]["run_id"] == "r006"
    # .changes is not data: the source's log is never copied as a run or an experiment
    assert len(log_files(dst)) == 1
    assert FileStore(str(tmp_path / "dst")).list_experiments() == ["q:1"]
