"""Claims, heartbeats and lost runs (local executors; SLURM faults are in tests/slurm)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import exec_ops

import metalab
from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import ThreadExecutor, run
from metalab.query import effective_status
from metalab.store import FileStore, FileStoreConfig

HERE = Path(__file__).parent


def test_only_one_of_many_concurrent_claims_wins(tmp_path):
    store = FileStore(tmp_path, "e:1")
    wins: list[str] = []
    barrier = threading.Barrier(16)

    def claim(i: int) -> None:
        barrier.wait()
        if store.try_claim("r1", f"owner-{i}", stale_after=60):
            wins.append(f"owner-{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    owner = wins[0]
    assert store.try_claim("r1", owner, 60)  # re-entrant for its owner
    assert store.touch_heartbeat("r1", owner) and not store.touch_heartbeat("r1", "other")
    store.release_claim("r1", "other")  # not the owner: no effect
    assert not store.try_claim("r1", "other", 60)
    store.release_claim("r1", owner)
    assert store.try_claim("r1", "other", 60)


def test_stale_claim_is_taken_over_by_exactly_one(tmp_path):
    store = FileStore(tmp_path, "e:1")
    assert store.try_claim("r1", "dead", 60)
    claim = Path(store.get_working_directory(), ".claims", "r1.claim")
    old = time.time() - 120
    os.utime(claim, (old, old))
    assert not store.try_claim("r1", "x", stale_after=300)  # not stale for a longer timeout
    wins = []
    barrier = threading.Barrier(8)

    def take(i: int) -> None:
        barrier.wait()
        if store.try_claim("r1", f"new-{i}", stale_after=60):
            wins.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert claim.read_text().startswith(f"new-{wins[0]}")
    assert [p.name for p in claim.parent.iterdir()] == ["r1.claim"]


def test_effective_status_marks_stale_running_as_lost():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    fresh = {"status": "running", "heartbeat_at": (now - timedelta(seconds=5)).isoformat()}
    stale = {"status": "running", "heartbeat_at": (now - timedelta(seconds=90)).isoformat()}
    assert effective_status(fresh, now, 60) == "running"
    assert effective_status(stale, now, 60) == "lost"
    assert effective_status({**stale, "status": "success"}, now, 60) == "success"
    assert effective_status({"status": "running", "started_at": "2020-01-01T00:00:00Z"}, now, 60) == "lost"


@operation
def held(context):
    """Runs while the file ``context['hold']`` exists (at most 30 s)."""
    end = time.monotonic() + 30
    while os.path.exists(context["hold"]) and time.monotonic() < end:
        time.sleep(0.02)
    return {"ok": 1}


def test_heartbeat_refreshes_the_running_record(tmp_path, monkeypatch):
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "0.1")
    hold = tmp_path / "hold"
    hold.write_text("x")
    exp = Experiment(name="hb", version="1", context={"hold": str(hold)}, operation=held,
                     params=grid(x=[1.0]), seeds=seeds(0, 1))
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(1))
    runs = tmp_path / "hb_1" / "runs"
    seen = set()
    # the operation runs until released: wait for three heartbeats, however slow the machine
    deadline = time.monotonic() + 25
    while len(seen) < 3 and not handle.done and time.monotonic() < deadline:
        for p in runs.glob("*.json"):
            try:
                doc = json.loads(p.read_text())
            except ValueError:
                continue
            if doc["status"] == "running":
                seen.add(doc["heartbeat_at"])
        time.sleep(0.03)
    hold.unlink()
    handle.wait()
    assert len(seen) >= 3, seen  # the heartbeat moved while the op ran
    (rec,) = [json.loads(p.read_text()) for p in runs.glob("*.json")]
    assert rec["status"] == "success"
    assert list((tmp_path / "hb_1" / ".claims").iterdir()) == []  # claim released


def test_run_claimed_by_another_launch_is_waited_for_not_skipped(tmp_path):
    exp = Experiment(name="cl", version="1", context={}, operation=exec_ops.failing,
                     params=grid(x=[1]), seeds=seeds(0, 1))
    rid = exp.spec(0).run_id
    store = FileStore(tmp_path, "cl:1")
    assert store.try_claim(rid, "someone-else", 60)  # live: fresh heartbeat, owner not known dead
    events = []
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(1), on_event=events.append)
    deadline = time.monotonic() + 10
    while handle.status.elsewhere == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    st = handle.status
    assert (st.elsewhere, st.skipped, st.done, handle.done) == (1, 0, 0, False), st
    assert handle.claimed_elsewhere[rid].startswith("claimed by someone-else, heartbeat ")
    assert store.get_run_record(rid) is None
    assert [e.kind.value for e in events] == []
    store.release_claim(rid, "someone-else")  # that launch gave up without a record
    assert handle.wait(timeout=30)
    st = handle.status
    assert (st.failed, st.elsewhere, st.skipped, st.done) == (1, 0, 0, 1), st
    assert store.get_run_record(rid).status.value == "failed"  # type: ignore[union-attr]
    assert [e.kind.value for e in events] == ["run_started", "run_failed"]


def test_kill9_mid_run_then_lost_then_resume(tmp_path, monkeypatch):
    counter = tmp_path / "count"
    counter.mkdir()
    block = tmp_path / "block"
    block.write_text("x")
    context = {"counter_dir": str(counter), "block": str(block)}
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import exec_ops
        from metalab.definition import Experiment, grid, seeds
        from metalab.execution import run
        exp = Experiment(name="k9", version="1", context={context!r},
                         operation=exec_ops.blocking, params=grid(x=[1, 2]), seeds=seeds(0, 1))
        if __name__ == "__main__":
            run(exp, store={str(tmp_path / "store")!r})
    """))
    env = {**os.environ, "METALAB_HEARTBEAT_INTERVAL": "0.1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    runs = tmp_path / "store" / "k9_1" / "runs"
    deadline = time.monotonic() + 20
    # killed while the operation executes (it has counted itself and waits for `block`)
    while time.monotonic() < deadline and not (list(runs.glob("*.json"))
                                               and list(counter.iterdir())):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    block.unlink()
    (doc,) = [json.loads(p.read_text()) for p in runs.glob("*.json")]  # no corrupt record
    assert doc["status"] == "running"
    monkeypatch.setenv("METALAB_LOST_AFTER", "1")
    # lost once the last heartbeat is more than 1 s old
    deadline = time.monotonic() + 20
    statuses = []
    while time.monotonic() < deadline:
        statuses = [r.status for r in metalab.load_results(tmp_path / "store")]
        if statuses != [metalab.Status.RUNNING]:
            break
        time.sleep(0.05)
    assert statuses == [metalab.Status.LOST]
    # resume takes the stale claim over and finishes everything
    exp = Experiment(name="k9", version="1", context=context, operation=exec_ops.blocking,
                     params=grid(x=[1, 2]), seeds=seeds(0, 1))
    handle = run(exp, store=tmp_path / "store")
    assert handle.status.success == 2
    recs = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert {r["status"] for r in recs.values()} == {"success"}
    assert recs[doc["run_id"]]["attempt"] == 2
    counts: dict[str, int] = {}
    for p in counter.iterdir():
        counts[p.name.split(".")[0]] = counts.get(p.name.split(".")[0], 0) + 1
    assert counts[doc["run_id"]] == 2 and sum(counts.values()) == 3


class _NoClaimsStore(FileStore):
    """A store that cannot keep launches apart (as a third-party backend may be)."""

    supports_claims = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class _NoClaimsConfig(FileStoreConfig):
    def connect(self) -> _NoClaimsStore:
        return _NoClaimsStore(self)


def test_run_warns_once_when_the_store_cannot_claim_runs(tmp_path, caplog):
    @operation
    def op(params, capture):
        capture.metric("y", params["x"])

    def exp(version: str) -> Experiment:
        return Experiment(name="noclaims", version=version, context={}, operation=op,
                          params=grid(x=[1, 2]), seeds=seeds(0))

    caplog.set_level("WARNING", logger="metalab.execution")
    run(exp("1"), store=FileStore(str(tmp_path / "claims"))).result()
    assert not [r for r in caplog.records if "cannot claim runs" in r.getMessage()]

    store = _NoClaimsConfig(root=str(tmp_path / "noclaims"))
    for version in ("1", "2"):
        assert run(exp(version), store=store).status.success == 2
    warned = [r.getMessage() for r in caplog.records if "cannot claim runs" in r.getMessage()]
    assert len(warned) == 1 and "_NoClaimsStore" in warned[0] and "may execute a run twice" in warned[0]


def test_a_held_run_whose_record_stays_unreadable_ends_as_lost(tmp_path, monkeypatch):
    """Waiting for another launch's run must not last forever when its record cannot be
    read at all (e.g. permissions): after the lost limit it ends as lost, with the reason."""
    exp = Experiment(name="unread", version="1", context={}, operation=exec_ops.failing,
                     params=grid(x=[1]), seeds=seeds(0))
    rid = exp.spec(0).run_id
    store = FileStore(tmp_path, "unread:1")
    assert store.try_claim(rid, "someone-else", 60)
    real = FileStore.get_run_record

    def unreadable(self, run_id):
        if run_id == rid:
            raise PermissionError(13, "Permission denied", f"runs/{rid}.json")
        return real(self, run_id)

    monkeypatch.setattr(FileStore, "get_run_record", unreadable)
    monkeypatch.setenv("METALAB_LOST_AFTER", "1")
    t0 = time.monotonic()
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(1))
    assert handle.wait(timeout=30), handle.status
    st = handle.status
    assert (st.lost, st.success, st.failed, st.elsewhere, st.done) == (1, 0, 0, 0, 1), st
    assert time.monotonic() - t0 >= 1.0  # it waited for the limit first
    assert store.claim_holder(rid)[0] == "someone-else"  # nothing was run in its place
