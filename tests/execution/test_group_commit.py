"""Group commit of the final records of a serial sweep (metalab.execution._commit).

A run executed by the default executor stages its final record (temp file, no
fsync); a committer thread syncs a group of them at once, renames them into
place, releases their claims and only then reports the runs done.  These tests
fail when a run is reported done before its record is synced and in place,
when a crash between the temp write and the rename loses a reported result,
or when a failed commit is reported as a success.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import EventKind, run
from metalab.execution._commit import GroupCommitter
from metalab.model import RunRecord, Status
from metalab.store import FileStore, _group_commit


@operation
def noop(params):
    return {"y": params["x"] * 2}


def exp(n: int) -> Experiment:
    return Experiment(name="gc", version="1", context={}, operation=noop,
                      params=grid(x=list(range(n))), seeds=seeds(0, 1))


def _runs(folder: Path) -> dict[str, dict]:
    out = {}
    for p in (folder / "runs").glob("*.json"):
        out[p.stem] = json.loads(p.read_bytes())
    return out


class Recorder:
    """Logs syncs (with the temp files they covered), renames of records and reports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.synced: dict[str, bytes] = {}  # temp path -> bytes it held when synced
        self.renamed: dict[str, str] = {}  # record path -> temp path it came from
        self.unsynced_renames: list[str] = []
        self.syncs = 0
        real_syncfs, real_fsync, real_replace = _group_commit._syncfs, os.fsync, os.replace

        def syncfs(folder: str) -> None:
            real_syncfs(folder)
            with self.lock:
                self.syncs += 1
                for name in os.listdir(folder):
                    if name.startswith(".tmp-"):
                        self.synced[os.path.join(folder, name)] = (Path(folder) / name).read_bytes()

        def fsync(fd: int) -> None:  # a group of one (or syncfs costing more) fsyncs its files
            real_fsync(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
            if os.path.basename(path).startswith(".tmp-") and f"{os.sep}runs{os.sep}" in path:
                with self.lock:
                    self.syncs += 1
                    self.synced[path] = Path(path).read_bytes()

        def replace(src, dst):  # type: ignore[no-untyped-def]
            src, dst = os.fspath(src), os.fspath(dst)
            if f"{os.sep}runs{os.sep}" in dst:
                with self.lock:
                    if self.synced.get(src) != Path(src).read_bytes():
                        self.unsynced_renames.append(dst)
                    self.renamed[dst] = src
            real_replace(src, dst)

        monkeypatch.setattr(_group_commit, "_syncfs", syncfs)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)


def test_a_run_is_reported_done_only_once_its_synced_record_is_in_place(tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    problems: list[str] = []
    folder = tmp_path / "gc_1"

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind is not EventKind.RUN_FINISHED:
            return
        path = folder / "runs" / f"{event.run_id}.json"
        if not path.exists() or json.loads(path.read_bytes())["status"] != "success":
            problems.append(f"{event.run_id} reported before its record was in place")
        elif str(path) not in rec.renamed:
            problems.append(f"{event.run_id}: its record was not put in place by a commit")
        if (folder / ".claims" / f"{event.run_id}.claim").exists():
            problems.append(f"{event.run_id} reported while its claim was still held")

    handle = run(exp(60), store=tmp_path, on_event=on_event)
    assert handle.status.success == 60
    assert problems == []
    assert rec.unsynced_renames == []  # every record's bytes were synced before its rename
    assert len(rec.renamed) == 60
    assert 1 <= rec.syncs <= 60
    assert all(d["status"] == "success" for d in _runs(folder).values())
    assert [n for n in os.listdir(folder / "runs") if n.startswith(".tmp-")] == []
    assert list((folder / ".claims").glob("*.claim")) == []
    assert sorted(r.run_id for r in handle.result()) == sorted(_runs(folder))


def test_without_syncfs_each_staged_record_is_fsynced(tmp_path, monkeypatch):
    def failing_syncfs(folder: str) -> None:
        raise OSError(5, "syncfs failed", folder)

    fsynced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(_group_commit, "_syncfs", failing_syncfs)
    monkeypatch.setattr(os, "fsync", fsync)
    handle = run(exp(5), store=tmp_path)
    assert handle.status.success == 5
    staged = [p for p in fsynced if f"{os.sep}runs{os.sep}.tmp-" in p]
    assert len(staged) == 5


def test_sync_files_fsyncs_one_by_one_while_syncfs_costs_more(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(_group_commit, "_syncfs", lambda folder: calls.append("syncfs"))
    monkeypatch.setattr(_group_commit, "_fsync_file", lambda path: calls.append("fsync"))
    monkeypatch.setattr(_group_commit._SyncCosts, "syncfs_s", 0.050)
    monkeypatch.setattr(_group_commit._SyncCosts, "fsync_s", 0.001)
    monkeypatch.setattr(_group_commit._SyncCosts, "note", classmethod(lambda cls, a, s: None))
    files = []
    for i in range(5):
        files.append(str(tmp_path / f".tmp-{i}"))
        Path(files[-1]).write_bytes(b"x")
    assert _group_commit.sync_files(files) == {}
    assert calls == ["fsync"] * 5  # 50 ms against 5 x 1 ms
    calls.clear()
    assert _group_commit.sync_files(files[:1]) == {}
    assert calls == ["fsync"]  # a group of one
    for _ in range(200):  # the unused syncfs estimate decays: syncfs is tried again
        calls.clear()
        _group_commit.sync_files(files)
        if calls == ["syncfs"]:
            break
    assert calls == ["syncfs"]


def test_a_failed_rename_is_reported_as_not_saved_and_the_resume_runs_it_again(tmp_path, monkeypatch):
    real_replace = os.replace
    victim: list[str] = []

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if f"{os.sep}runs{os.sep}" in os.fspath(dst) and not victim:
            victim.append(Path(dst).stem)
            raise OSError(28, "No space left on device", os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    handle = run(exp(4), store=tmp_path)
    st = handle.status
    assert (st.success, st.lost, st.done) == (3, 1, 4), st
    folder = tmp_path / "gc_1"
    assert victim[0] not in _runs(folder)
    assert [n for n in os.listdir(folder / "runs") if n.startswith(".tmp-")] == []
    assert list((folder / ".claims").glob("*.claim")) == []
    monkeypatch.setattr(os, "replace", real_replace)
    again = run(exp(4), store=tmp_path)
    assert (again.status.success, again.status.skipped) == (1, 3)


def test_a_staged_record_never_handed_over_is_discarded_with_its_claim(tmp_path):
    store = FileStore(tmp_path, "gc:1")
    assert store.try_claim("r1", "me", 60)
    committer = GroupCommitter(store, lambda *a: pytest.fail("nothing was handed over"))
    committer.stage(RunRecord(run_id="r1", experiment_id="gc:1", status=Status.SUCCESS), "me", False)
    assert committer.holds("r1")
    committer.close()
    assert store.get_run_record("r1") is None
    assert store.claim_holder("r1") is None
    assert [n for n in os.listdir(tmp_path / "gc_1" / "runs") if n.startswith(".tmp-")] == []


def test_a_record_staged_from_another_thread_is_written_at_once(tmp_path):
    store = FileStore(tmp_path, "gc:1")
    committer = GroupCommitter(store, lambda *a: None)
    rec = RunRecord(run_id="r2", experiment_id="gc:1", status=Status.SUCCESS)
    t = threading.Thread(target=committer.stage, args=(rec, None, False))
    t.start()
    t.join()
    assert not committer.holds("r2")
    assert store.get_run_record("r2") == rec
    committer.close()


_KILLED_SWEEP = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from metalab.store import FileStore, _group_commit
    from metalab.execution import EventKind, run
    from test_group_commit import exp

    real = FileStore.commit_staged
    commits = []

    def commit_staged(self, staged):
        commits.append(len(staged))
        if len(commits) == 3:
            # synced, half of the group renamed, then killed before the rest
            _group_commit.sync_files([s.tmp for s in staged])
            for s in staged[: len(staged) // 2]:
                os.replace(s.tmp, s.target)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, staged)

    FileStore.commit_staged = commit_staged

    def on_event(event):
        if event.kind is EventKind.RUN_FINISHED:
            fd = os.open({reported!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, (event.run_id + "\\n").encode())
            os.close(fd)

    run(exp(400), store={root!r}, on_event=on_event)
""")


def test_kill9_between_the_temp_writes_and_the_renames_loses_no_reported_result(tmp_path):
    root, reported = tmp_path / "store", tmp_path / "reported.txt"
    script = _KILLED_SWEEP.format(tests=str(Path(__file__).parent), reported=str(reported), root=str(root))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    folder = root / "gc_1"
    on_disk = {rid for rid, d in _runs(folder).items() if d["status"] == "success"}
    said_done = set(reported.read_text().split()) if reported.exists() else set()
    assert said_done <= on_disk  # every run reported done has its record
    assert len(on_disk) < 400  # the kill hit the sweep
    temps = [n for n in os.listdir(folder / "runs") if n.startswith(".tmp-")]
    assert temps  # the group's other half: staged, never renamed
    handle = run(exp(400), store=root)  # at once: the dead owner's claims are stale
    st = handle.status
    assert (st.success, st.skipped, st.done) == (400 - len(on_disk), len(on_disk), 400), st
    assert all(d["status"] == "success" for d in _runs(folder).values())
    assert len(_runs(folder)) == 400
    # the runs taken over from the dead owner lost their staged temp files too
    assert [n for n in os.listdir(folder / "runs") if n.startswith(".tmp-")] == []
