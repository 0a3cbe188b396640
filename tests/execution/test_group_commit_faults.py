"""Faults around the group commit of a serial sweep (metalab.execution._commit).

An ``on_event`` callback that raises ``SystemExit`` (``sys.exit()`` to stop a
sweep, a test runner's ``BaseException``), a committer thread that dies, an
interrupt while the submitting thread waits for room or for the last group,
and a FileStore subclass that watches ``put_run_record``.  These tests fail
when the launch hangs (each has a timeout), when the callback's exception is
swallowed, when a run whose record is in place is reported otherwise, or
when temp files or claims are left behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import EventKind, _commit, run
from metalab.execution._commit import GroupCommitter
from metalab.model import RunRecord, Status
from metalab.store import FileStore

#: seconds after which a hanging launch fails its test
HANG_S = 60


@operation
def noop(params):
    return {"y": params["x"]}


def exp(n: int) -> Experiment:
    return Experiment(name="gcf", version="1", context={}, operation=noop,
                      params=grid(x=list(range(n))), seeds=seeds(0, 1))


def _leftovers(folder: Path) -> tuple[list[str], list[str]]:
    tmps = [n for n in os.listdir(folder / "runs") if n.startswith(".tmp-")]
    claims = [p.name for p in (folder / ".claims").glob("*.claim")] if (folder / ".claims").exists() else []
    return tmps, claims


def _stop_at_first_finish(event) -> None:  # type: ignore[no-untyped-def]
    if event.kind is EventKind.RUN_FINISHED:
        sys.exit("stop the sweep")


@pytest.mark.timeout(HANG_S)
@pytest.mark.parametrize("n", [50, 400])  # 400: more than MAX_QUEUED runs wait for a commit
def test_a_callback_raising_system_exit_stops_the_serial_launch(tmp_path, n):
    with pytest.raises(SystemExit, match="stop the sweep"):
        run(exp(n), store=tmp_path, on_event=_stop_at_first_finish, progress=False)
    folder = tmp_path / "gcf_1"
    assert _leftovers(folder) == ([], [])
    store = FileStore(tmp_path, "gcf:1")
    records = list(store.list_run_records())
    assert records and all(r.status is Status.SUCCESS for r in records)
    if n > _commit.MAX_QUEUED:
        assert len(records) < n  # the launch stopped (a small one may have ended first)


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, experiment_id="gcf:1", status=Status.SUCCESS)


def _done_future(rec: RunRecord) -> cf.Future:
    fut: cf.Future = cf.Future()
    fut.set_running_or_notify_cancel()
    fut.set_result(rec)
    return fut


def _hand_over(committer: GroupCommitter, store: FileStore, run_id: str) -> bool:
    assert store.try_claim(run_id, "me", 60)
    rec = _record(run_id)
    committer.stage(rec, "me", False)
    return committer.submitted(run_id, _done_future(rec), None)


@pytest.mark.timeout(HANG_S)
def test_runs_handed_over_after_the_committer_thread_died_are_committed_here(tmp_path, monkeypatch):
    def broken(self) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("committer broke")

    monkeypatch.setattr(GroupCommitter, "_groups", broken)
    monkeypatch.setattr(_commit, "MAX_QUEUED", 2)
    store = FileStore(tmp_path, "gcf:1")
    tracked: list[str] = []
    committer = GroupCommitter(store, lambda run_id, fut, job: tracked.append(run_id))
    with pytest.raises(RuntimeError, match="committer broke"):
        for i in range(6):
            _hand_over(committer, store, f"r{i}")
    committer.close()
    handed = len(tracked)
    assert handed >= 1
    assert {r.run_id for r in store.list_run_records()} == set(tracked)
    assert _leftovers(tmp_path / "gcf_1") == ([], [])


def _interrupt_main_after(delay: float) -> threading.Thread:
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def fire() -> None:
        time.sleep(delay)
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


class _BlockedCommits:
    """Holds every ``commit_staged`` of ``store`` until :attr:`go` is set."""

    def __init__(self, store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.go = threading.Event()
        real = store.commit_staged

        def commit_staged(staged):  # type: ignore[no-untyped-def]
            self.go.wait(HANG_S)
            return real(staged)

        monkeypatch.setattr(store, "commit_staged", commit_staged)


@pytest.mark.timeout(HANG_S)
def test_an_interrupt_while_waiting_for_room_still_commits_the_run(tmp_path, monkeypatch,
                                                                   interactive_sigint):
    monkeypatch.setattr(_commit, "MAX_QUEUED", 1)
    store = FileStore(tmp_path, "gcf:1")
    blocked = _BlockedCommits(store, monkeypatch)
    tracked: list[str] = []
    committer = GroupCommitter(store, lambda run_id, fut, job: tracked.append(run_id))
    assert _hand_over(committer, store, "r0")
    time.sleep(0.1)  # the committer takes r0 and blocks in its commit
    assert _hand_over(committer, store, "r1")  # queued
    _interrupt_main_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        _hand_over(committer, store, "r2")  # waits for room
    blocked.go.set()
    committer.close()
    assert sorted(tracked) == ["r0", "r1", "r2"]
    assert sorted(r.run_id for r in store.list_run_records()) == ["r0", "r1", "r2"]
    assert _leftovers(tmp_path / "gcf_1") == ([], [])


@pytest.mark.timeout(HANG_S)
def test_an_interrupt_while_closing_still_reports_every_run(tmp_path, monkeypatch,
                                                           interactive_sigint):
    store = FileStore(tmp_path, "gcf:1")
    blocked = _BlockedCommits(store, monkeypatch)
    tracked: list[str] = []
    committer = GroupCommitter(store, lambda run_id, fut, job: tracked.append(run_id))
    for i in range(3):
        assert _hand_over(committer, store, f"r{i}")
    store.try_claim("left", "me", 60)
    committer.stage(_record("left"), "me", False)  # staged, never handed over
    _interrupt_main_after(0.2)
    threading.Timer(0.6, blocked.go.set).start()
    with pytest.raises(KeyboardInterrupt):
        committer.close()
    assert sorted(tracked) == ["r0", "r1", "r2"]
    assert sorted(r.run_id for r in store.list_run_records()) == ["r0", "r1", "r2"]
    assert _leftovers(tmp_path / "gcf_1") == ([], [])


class WatchingStore(FileStore):
    """A FileStore subclass that sees every record written (to index it, say)."""

    seen: list[tuple[str, Status]] = []  # (shared by the launch's scoped copies)

    def put_run_record(self, record, *, durable=True) -> None:  # type: ignore[no-untyped-def]
        self.seen.append((record.run_id, record.status))
        super().put_run_record(record, durable=durable)


@pytest.mark.timeout(HANG_S)
def test_a_subclass_overriding_put_run_record_sees_the_final_records(tmp_path):
    store = WatchingStore(tmp_path, "gcf:1")  # (scoped: the launch uses it as it is)
    WatchingStore.seen.clear()
    handle = run(exp(5), store=store, progress=False)
    assert handle.status.success == 5
    finals = {run_id for run_id, status in store.seen if status is Status.SUCCESS}
    assert finals == {r.run_id for r in handle.result()}
