"""Which writes of a run are made durable (fsync) and which are only atomic.

Only the final record must survive a power loss; the ``running`` record,
heartbeats, claims and logs are re-created when a lost run restarts, so
they are written atomically (temp file + rename) without an fsync.  A
first attempt shorter than its first heartbeat writes no ``running`` record
at all.  Each
test records what is on disk in the file being fsynced at that moment
(a group commit's ``syncfs``: in each temp file of the synced folder).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import SerialExecutor, ThreadExecutor, run
from metalab.model import RunRecord, Status
from metalab.store import FileStore, _group_commit

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="names fsynced files through /proc/self/fd"
)


@operation
def noop(params):
    return None


@operation
def slow_noop(params):
    time.sleep(0.35)  # several heartbeats at METALAB_HEARTBEAT_INTERVAL=0.05


class FsyncLog:
    """Replaces os.fsync and the group commit's syncfs; remembers the path and
    contents of every file made durable (for a syncfs of a folder: its temp files)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.syncfs_calls = 0
        real = os.fsync
        real_syncfs = _group_commit._syncfs

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            self.calls.append((path, _read(path)))
            real(fd)

        def syncfs(folder: str) -> None:
            self.syncfs_calls += 1
            real_syncfs(folder)  # (a failure here is the fallback's to handle)
            for name in sorted(os.listdir(folder)):
                if name.startswith(".tmp-"):
                    self.calls.append((os.path.join(folder, name), _read(os.path.join(folder, name))))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(_group_commit, "_syncfs", syncfs)

    def run_records(self) -> list[dict]:
        """Run records (JSON objects with a run_id and a status) that were fsynced
        (a temp file synced by several syncfs calls counts once)."""
        out = []
        seen: set[str] = set()
        for path, data in self.calls:
            if f"{os.sep}runs{os.sep}" not in path or (".tmp-" in path and path in seen):
                continue
            seen.add(path)
            doc = json.loads(data)
            assert isinstance(doc, dict) and "status" in doc, (path, data)
            out.append(doc)
        return out


def _read(path: str) -> bytes:
    if not os.path.isfile(path):
        return b""
    with open(path, "rb") as fh:
        return fh.read()


def exp(op, n: int) -> Experiment:
    return Experiment(name="dur", version="1", context={}, operation=op,
                      params=grid(x=list(range(n))), seeds=seeds(0, 1))


@pytest.mark.parametrize("executor", [SerialExecutor, lambda: ThreadExecutor(2)],
                         ids=["serial", "thread"])
def test_a_sweep_fsyncs_each_final_record_once_and_no_running_record(
    tmp_path, monkeypatch, executor
):
    fsyncs = FsyncLog(monkeypatch)
    handle = run(exp(noop, 4), store=tmp_path, executor=executor())
    handle.wait()
    assert handle.status.success == 4
    durable = fsyncs.run_records()
    assert sorted(d["status"] for d in durable) == ["success"] * 4
    assert len({d["run_id"] for d in durable}) == 4
    # what is left: the folder's meta file and the manifest (once per sweep), the runs/
    # folder (once per group commit of a serial sweep), no per-run extras
    folders = [p for p, _ in fsyncs.calls if p.endswith(f"{os.sep}runs")]
    assert len(folders) <= 4, folders
    others = [p for p, _ in fsyncs.calls if f"{os.sep}runs{os.sep}" not in p and p not in folders]
    assert len(others) <= 3, others


def test_heartbeats_are_not_fsynced(tmp_path, monkeypatch):
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "0.05")
    fsyncs = FsyncLog(monkeypatch)
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        renamed.append(os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    handle = run(exp(slow_noop, 1), store=tmp_path)
    assert handle.status.success == 1
    record_writes = [p for p in renamed if f"{os.sep}runs{os.sep}" in p]
    # running record, at least two heartbeats, final record: only the final one is fsynced
    assert len(record_writes) >= 4, record_writes
    assert [d["status"] for d in fsyncs.run_records()] == ["success"]
    stored = FileStore(tmp_path, "dur:1").list_run_records()
    assert [r.status for r in stored] == [Status.SUCCESS]


def test_put_run_record_durable_keyword(tmp_path, monkeypatch):
    store = FileStore(tmp_path, "dur:1")
    rec = RunRecord(run_id="r1", experiment_id="dur:1", status=Status.RUNNING)
    store.put_run_record(rec)  # creates the folder and its meta file
    fsyncs = FsyncLog(monkeypatch)
    store.put_run_record(rec, durable=False)
    assert fsyncs.calls == []
    assert store.get_run_record("r1") == rec
    done = rec.replace(status=Status.SUCCESS)
    store.put_run_record(done)
    assert [d["status"] for d in fsyncs.run_records()] == ["success"]
    assert store.get_run_record("r1") == done
    leftovers = [n for n in os.listdir(tmp_path / "dur_1" / "runs") if n != "r1.json"]
    assert leftovers == []


def _record_renames(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths under runs/ that os.replace put in place, in order."""
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if f"{os.sep}runs{os.sep}" in os.fspath(dst):
            renamed.append(os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return renamed


def test_a_short_first_attempt_writes_only_its_final_record(tmp_path, monkeypatch):
    renamed = _record_renames(monkeypatch)
    handle = run(exp(noop, 4), store=tmp_path)
    assert handle.status.success == 4
    # one record file write per run: no running record for runs shorter than the first beat
    assert len(renamed) == 4 and len(set(renamed)) == 4, renamed


def _raw_status(folder: str, run_id: str) -> tuple[str, int] | None:
    path = os.path.join(folder, "dur_1", "runs", f"{run_id}.json")
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return None
    return doc["status"], doc["attempt"]


@operation
def watch_own_record(params, runtime, capture):
    """Records what the raw record file says at the start and once a running record appears."""
    at_start = _raw_status(params["folder"], runtime.run_id)
    capture.metric("record_at_start", "none" if at_start is None else f"{at_start[0]}/{at_start[1]}")
    deadline = time.monotonic() + 10
    seen = at_start
    while (seen is None or seen[0] != "running") and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = _raw_status(params["folder"], runtime.run_id)
    capture.metric("record_later", "none" if seen is None else f"{seen[0]}/{seen[1]}")
    if params["fail_first"] and at_start is None:
        raise RuntimeError("first attempt fails on purpose")


def _watching(folder, *, fail_first: bool) -> Experiment:
    """One run of watch_own_record on the store at ``folder``."""
    return Experiment(name="dur", version="1", context={}, operation=watch_own_record,
                      params=grid(folder=[str(folder)], fail_first=[fail_first]),
                      seeds=seeds(0, 1))


def test_a_longer_first_attempt_shows_running_from_its_first_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "0.1")
    handle = run(_watching(tmp_path, fail_first=False), store=tmp_path)
    assert handle.status.success == 1
    (rec,) = FileStore(tmp_path, "dur:1").list_run_records()
    assert rec.metrics["record_at_start"] == "none"  # claimed, not yet shown as running
    assert rec.metrics["record_later"] == "running/1"  # written by the first heartbeat


def test_a_new_attempt_replaces_the_earlier_record_at_once(tmp_path, monkeypatch):
    # the heartbeat would come only after 10 s: the running record seen is the one written at start
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "10")
    e = _watching(tmp_path, fail_first=True)
    first = run(e, store=tmp_path)
    assert first.status.failed == 1
    (failed,) = FileStore(tmp_path, "dur:1").list_run_records()
    assert failed.status is Status.FAILED
    second = run(e, store=tmp_path, resume=True)
    assert second.status.success == 1
    (rec,) = FileStore(tmp_path, "dur:1").list_run_records()
    assert rec.attempt == 2
    # never "failed" while the second attempt ran: its running record replaced it at once
    assert rec.metrics["record_at_start"] == "running/2"
