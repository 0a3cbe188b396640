"""Liveness of claim and lock owners: resume right after kill -9, runs claimed by a
live launch elsewhere, debris of create-then-write, stale locks, the end-of-run report
and an orderly shutdown without noise."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import liveness_ops
import pytest

from metalab._internal import _atomic, _owner
from metalab._internal._lockfile import FileLock
from metalab.definition import Experiment, grid, seeds
from metalab.execution import ProcessExecutor, ThreadExecutor, run
from metalab.store import FileStore

HERE = Path(__file__).parent
SRC = HERE.parent.parent / "src"


def _python(code: str, **kw: object) -> subprocess.Popen[bytes]:
    """Start ``code`` in a fresh interpreter that can import metalab and the test ops."""
    prelude = f"import sys; sys.path[:0] = [{str(SRC)!r}, {str(HERE)!r}]\n"
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], **kw)  # type: ignore[call-overload]


def _claims(folder: Path) -> list[str]:
    claims = folder / ".claims"
    if not claims.exists():
        return []
    return sorted(p.name for p in claims.iterdir() if not p.name.startswith(".tmp-"))


def _raw(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")}


def _claim_in_subprocess(root: Path, eid: str, rid: str, *, stay: bool) -> subprocess.Popen[bytes]:
    """A process that claims ``rid`` with its own owner, then exits without
    releasing it (``stay=False``) or sleeps until killed."""
    proc = _python(
        f"""
        import os, time
        from metalab.execution._claims import new_owner
        from metalab.store import FileStore
        assert FileStore({str(root)!r}, {eid!r}).try_claim({rid!r}, new_owner(), 60)
        print("claimed", flush=True)
        if {stay!r}:
            time.sleep(120)
        os._exit(0)
        """,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"claimed"
    return proc


# ------------------------------------------------------------------ owners
def test_owner_string_names_host_pid_boot_and_start():
    text = _owner.new_owner()
    owner = _owner.parse_owner(text)
    assert owner is not None, text
    assert owner.host == _owner.this_host() and owner.pid == os.getpid()
    assert owner.label == f"{_owner.this_host()}:{os.getpid()}"
    if os.path.exists("/proc/self/stat"):
        assert owner.boot != "0" and owner.start != "0" and owner.pidns != "0"
    assert _owner.new_owner() != text  # a fresh token per execution
    assert not _owner.owner_is_dead(text)


def test_dead_zombie_and_reused_owners_are_dead_others_unknown():
    # exited and reaped
    proc = _python("import os; from metalab._internal._owner import new_owner; print(new_owner())",
                   stdout=subprocess.PIPE)
    out, _ = proc.communicate()
    gone = out.decode().strip()
    assert _owner.owner_is_dead(gone)
    # exited, not yet reaped (a zombie still answers kill -0)
    proc = _python("import os; from metalab._internal._owner import new_owner; print(new_owner(), "
                   "flush=True); os._exit(0)", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    zombie = proc.stdout.readline().decode().strip()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    os.kill(proc.pid, 0)  # still there
    assert _owner.owner_is_dead(zombie)
    proc.wait()
    # our own pid with another start time: the pid was reused
    me = _owner.parse_owner(_owner.new_owner())
    assert me is not None
    reused = f"{me.host}:{me.pid}:{me.boot}:{me.pidns}:{int(me.start) + 7}:abc"
    assert _owner.owner_is_dead(reused) == (me.start != "0")
    # another host, another boot, another namespace, another format: not known
    assert not _owner.owner_is_dead(f"elsewhere:{proc.pid}:{me.boot}:{me.pidns}:1:abc")
    assert not _owner.owner_is_dead(f"{me.host}:{proc.pid}:deadbeef:{me.pidns}:1:abc")
    assert not _owner.owner_is_dead(f"{me.host}:{proc.pid}:{me.boot}:12345:1:abc")
    assert not _owner.owner_is_dead(f"{me.host}:{proc.pid}:tok")
    assert _owner.holder_is_stale(gone, 0.1, 60)
    assert not _owner.holder_is_stale("someone", 0.1, 60)
    assert _owner.holder_is_stale("someone", 61, 60)
    assert not _owner.holder_is_stale("", 0.5, 60) and _owner.holder_is_stale("", 3, 60)


# ------------------------------------------------------------------ claims
def test_claim_of_a_dead_owner_is_taken_over_at_once(tmp_path):
    proc = _claim_in_subprocess(tmp_path, "e:1", "r1", stay=False)
    proc.wait()
    store = FileStore(tmp_path, "e:1")
    claim = Path(store.get_working_directory(), ".claims", "r1.claim")
    assert claim.read_text().split(":")[1] == str(proc.pid)
    assert store.try_claim("r1", "me", stale_after=60)
    assert claim.read_text().startswith("me\n")
    assert _claims(Path(store.get_working_directory())) == ["r1.claim"]


def test_claim_of_a_live_owner_is_kept(tmp_path):
    proc = _claim_in_subprocess(tmp_path, "e:1", "r1", stay=True)
    try:
        store = FileStore(tmp_path, "e:1")
        assert not store.try_claim("r1", "me", stale_after=60)
        holder = store.claim_holder("r1")
        assert holder is not None and holder[0].split(":")[1] == str(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert store.try_claim("r1", "me", stale_after=60)


def test_empty_claim_file_is_debris_after_a_short_grace(tmp_path):
    store = FileStore(tmp_path, "e:1")
    assert store.try_claim("r0", "x", 60)  # creates the folders
    claim = Path(store.get_working_directory(), ".claims", "r1.claim")
    claim.write_bytes(b"")
    assert not store.try_claim("r1", "me", stale_after=60)  # may be a creator at work
    old = time.time() - 5
    os.utime(claim, (old, old))
    assert store.try_claim("r1", "me", stale_after=60)
    assert claim.read_text().startswith("me\n")


def test_run_with_an_empty_claim_is_waited_for_then_taken_over(tmp_path, caplog):
    # what kill -9 between the claim's exclusive create and its write leaves behind
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="cl", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[1, 2]), seeds=seeds(0, 1))
    rid = exp.spec(0).run_id
    store = FileStore(tmp_path, "cl:1")
    assert store.try_claim("other", "x", 60)  # creates the folders
    store.release_claim("other", "x")
    Path(store.get_working_directory(), ".claims", f"{rid}.claim").write_bytes(b"")
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="metalab"):
        handle = run(exp, store=tmp_path)
    assert handle.wait(timeout=30)
    st = handle.status
    assert (st.success, st.elsewhere, st.skipped, st.done) == (2, 0, 0, 2), st
    assert time.monotonic() - t0 >= 1.5  # the grace of an empty claim
    assert "a claim file that is still empty" in caplog.text, caplog.text
    assert {d["status"] for d in _raw(tmp_path / "cl_1").values()} == {"success"}
    assert _claims(tmp_path / "cl_1") == []


def _enospc_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write

    def write(fd: int, data: bytes) -> int:
        if os.fstat(fd).st_size == 0 and len(data) < 4096 and b"\n" in bytes(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_failed_write_after_exclusive_create_leaves_nothing(tmp_path, monkeypatch):
    store = FileStore(tmp_path, "e:1")
    assert store.try_claim("r0", "x", 60)
    folder = Path(store.get_working_directory())
    lock_path = tmp_path / "some.lock"
    _enospc_on_write(monkeypatch)
    with pytest.raises(OSError) as info:
        store.try_claim("r1", "me", 60)
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        FileLock(str(lock_path)).acquire(1)
    with pytest.raises(OSError):
        _atomic.create_exclusive(str(tmp_path / "x.json"), b"{}\n")
    monkeypatch.undo()
    assert sorted(os.listdir(folder / ".claims")) == ["r0.claim"]
    assert sorted(os.listdir(tmp_path)) == ["e_1"]
    assert store.try_claim("r1", "me", 60)  # nothing left in the way


# ------------------------------------------------------------ kill -9, resume
def test_resume_right_after_kill9_of_a_process_sweep_completes_every_run(tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    root = tmp_path / "store"
    folder = root / "k9_1"
    context = {"counter_dir": str(counter)}
    exp = Experiment(name="k9", version="1", context=context, operation=liveness_ops.napping,
                     params=grid(x=list(range(30))), seeds=seeds(0, 2))
    proc = _python(
        f"""
        import liveness_ops
        from metalab.definition import Experiment, grid, seeds
        from metalab.execution import ProcessExecutor, run
        exp = Experiment(name="k9", version="1", context={context!r},
                         operation=liveness_ops.napping, params=grid(x=list(range(30))),
                         seeds=seeds(0, 2))
        if __name__ == "__main__":
            run(exp, store={str(root)!r}, executor=ProcessExecutor(4)).wait()
        """,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((folder / "runs").glob("*.json")):
        time.sleep(0.02)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _raw(folder)
    succeeded = {rid for rid, doc in before.items() if doc["status"] == "success"}
    assert len(succeeded) < 60, "the sweep ended before the kill; nothing to test"
    assert any(d["status"] == "running" for d in before.values()) or _claims(folder)

    handle = run(exp, store=root, executor=ProcessExecutor(4))  # at once
    assert handle.wait(timeout=120)
    st = handle.status
    after = _raw(folder)
    assert {d["status"] for d in after.values()} == {"success"} and len(after) == 60, st
    assert (st.success, st.skipped, st.failed, st.done) == (60 - len(succeeded), len(succeeded), 0, 60), st
    assert st.elsewhere == 0 and st.pending == 0 and st.running == 0, st
    # no claim is left, except one the kill left on a run whose final record was already
    # written (killed between that write and the release): the resume skips such a run, and
    # its dead owner makes the claim harmless debris (never in the way of a later launch)
    for name in _claims(folder):
        owner = (folder / ".claims" / name).read_text().split("\n", 1)[0]
        assert name.removesuffix(".claim") in succeeded and _owner.owner_is_dead(owner), name
    executed = {p.name.split(".")[0] for p in counter.iterdir()}
    assert executed == set(after)


def test_run_claimed_by_a_live_launch_is_waited_for_then_taken_over(tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="cl", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[1, 2]), seeds=seeds(0, 1))
    rid = exp.spec(0).run_id
    other = _claim_in_subprocess(tmp_path, "cl:1", rid, stay=True)
    try:
        handle = run(exp, store=tmp_path, executor=ThreadExecutor(2))
        deadline = time.monotonic() + 10
        while handle.status.elsewhere == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        st = handle.status
        assert (st.elsewhere, st.skipped, st.success, st.done, st.finished) == (1, 0, 1, 1, False), st
        assert not handle.done
        text = handle.claimed_elsewhere[rid]
        assert f"claimed by {_owner.this_host()}:{other.pid}, heartbeat" in text, text
    finally:
        other.kill()
        other.wait()
    assert handle.wait(timeout=30)
    st = handle.status
    assert (st.success, st.elsewhere, st.skipped, st.done) == (2, 0, 0, 2), st
    assert {d["status"] for d in _raw(tmp_path / "cl_1").values()} == {"success"}
    assert _claims(tmp_path / "cl_1") == []


def test_run_finished_by_the_launch_holding_it_is_not_executed_again(tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="cf", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[1]), seeds=seeds(0, 1))
    rid = exp.spec(0).run_id
    store = FileStore(tmp_path, "cf:1")
    assert store.try_claim(rid, "another-launch", 60)  # a live claim of another format
    events: list[str] = []
    done = threading.Event()

    def go() -> None:
        handle = run(exp, store=tmp_path, on_event=lambda e: events.append(e.kind.value))
        events.append(f"status {handle.status}")
        done.set()

    t = threading.Thread(target=go)
    t.start()
    time.sleep(1.0)
    assert not done.is_set()  # the serial run() waits for the other launch
    # the other launch finishes the run and releases its claim
    other = run(exp, store=tmp_path / "elsewhere")  # a real record to copy
    other.wait()
    rec = FileStore(tmp_path / "elsewhere", "cf:1").get_run_record(rid)
    assert rec is not None
    store.put_run_record(rec)
    store.release_claim(rid, "another-launch")
    t.join(timeout=30)
    assert done.is_set()
    # counted as skipped (succeeded without this launch executing it), not as success
    assert events[-1].startswith("status RunStatus(total=1, done=1, success=0, failed=0, "
                                 "cancelled=0, running=0, pending=0, skipped=1"), events
    assert events[:-1] == ["run_skipped"], events
    assert len(list(counter.iterdir())) == 1  # executed once (by the other launch)


# -------------------------------------------------------------- stale locks
def _dead_lock(path: Path) -> None:
    proc = _python(f"""
        import os
        from metalab._internal._lockfile import FileLock
        FileLock({str(path)!r}).acquire(5)
        os._exit(0)
        """)
    proc.wait()
    assert path.exists() and path.read_text().strip()


def test_catalog_lock_left_by_a_dead_query_does_not_block(tmp_path):
    exp = Experiment(name="q", version="1", context={}, operation=liveness_ops.quick,
                     params=grid(x=[1, 2, 3]), seeds=seeds(0, 1))
    run(exp, store=tmp_path)
    store = FileStore(tmp_path, "q:1")
    assert len(store.query_runs()) == 3
    lock = tmp_path / "q_1" / ".catalog" / "lock"
    _dead_lock(lock)
    t0 = time.monotonic()
    assert len(store.query_runs(where="metrics.y >= 2")) == 2
    assert time.monotonic() - t0 < 5
    assert not lock.exists()


def test_artifact_lock_left_empty_or_by_a_dead_writer_does_not_block(tmp_path):
    store = FileStore(tmp_path, "a:1")
    lock = Path(store.get_working_directory(), "artifacts", "r1", "_manifest.lock")
    lock.parent.mkdir(parents=True)
    _dead_lock(lock)
    t0 = time.monotonic()
    store.put_artifact("r1", "one", b"1", kind="bytes", format="bin")
    lock.write_bytes(b"")  # a writer that died between create and write
    old = time.time() - 5
    os.utime(lock, (old, old))
    store.put_artifact("r1", "two", b"2", kind="bytes", format="bin")
    assert time.monotonic() - t0 < 5
    assert [a.name for a in store.list_artifacts("r1")] == ["one", "two"]


# ----------------------------------------------------------- end-of-run report
def test_failures_are_reported_at_the_end_of_run(tmp_path, caplog):
    exp = Experiment(name="f", version="1", context={}, operation=liveness_ops.sometimes_failing,
                     params=grid(x=[1, 2, 3, 4, 5, 6]), seeds=seeds(0, 1))
    with caplog.at_level(logging.WARNING, logger="metalab.execution"):
        handle = run(exp, store=tmp_path)
    assert handle.status.failed == 2
    reports = [r for r in caplog.records if "runs failed" in r.getMessage()]
    assert len(reports) == 1, caplog.text
    msg = reports[0].getMessage()
    first = exp.spec(1).run_id  # x=2
    assert msg.startswith(f"2 of 6 runs failed; first: run {first}: ValueError: boom for x=2"), msg
    assert "second line" not in msg and f"metalab runs show {first}" in msg
    assert reports[0].levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="metalab.execution"):
        run(exp, store=tmp_path / "other", executor=ThreadExecutor(3)).wait()
    assert len([r for r in caplog.records if "2 of 6 runs failed" in r.getMessage()]) == 1


def test_no_report_when_every_run_succeeds(tmp_path, caplog):
    exp = Experiment(name="ok", version="1", context={}, operation=liveness_ops.quick,
                     params=grid(x=[1, 2]), seeds=seeds(0, 1))
    with caplog.at_level(logging.DEBUG, logger="metalab.execution"):
        run(exp, store=tmp_path)
    assert "failed" not in caplog.text


# ------------------------------------------------------------------- noise
NOISE_SCRIPT = """
    import json, pathlib
    import liveness_ops
    from metalab.definition import Experiment, grid, seeds
    from metalab.execution import ProcessExecutor, run
    exp = Experiment(name="n", version="1", context={{}}, operation=liveness_ops.quick,
                     params=grid(x=list(range(8))), seeds=seeds(0, 1))
    if __name__ == "__main__":
        mode = {mode!r}
        h = run(exp, store={root!r}, executor=ProcessExecutor(4))
        if mode == "cancel":
            h.cancel()
        else:
            # another launch completes every run before the workers start: they skip them
            for p in pathlib.Path({root!r}, "n_1", "runs").glob("*.json"):
                doc = json.loads(p.read_text())
                doc["status"] = "success"
                p.write_text(json.dumps(doc))
        h.wait()
        print("status", h.status, flush=True)
"""


@pytest.mark.parametrize("mode", ["cancel", "skipped-in-workers"])
def test_orderly_shutdown_prints_no_traceback(tmp_path, mode):
    root = tmp_path / "store"
    exp = Experiment(name="n", version="1", context={}, operation=liveness_ops.quick,
                     params=grid(x=list(range(8))), seeds=seeds(0, 1))
    for _ in range(3):
        if mode != "cancel":
            run(exp, store=root, resume=False)
            for p in (root / "n_1" / "runs").glob("*.json"):
                doc = json.loads(p.read_text())
                doc["status"] = "failed"
                p.write_text(json.dumps(doc))
        proc = _python(NOISE_SCRIPT.format(mode=mode, root=str(root)), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert b"status" in out
        if mode != "cancel":
            assert b"skipped=8" in out, out.decode()
        assert b"Traceback" not in err and b"SemLock" not in err, err.decode()


def test_a_damaged_record_is_executed_again_and_replaced(tmp_path):
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="cl", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[2]), seeds=seeds(0, 1))
    assert run(exp, store=tmp_path).status.success == 1
    (path,) = (tmp_path / "cl_1" / "runs").glob("*.json")
    path.write_bytes(b'{"run_id": "trunc')  # a record cut short (hand edit, bad copy)
    handle = run(exp, store=tmp_path)
    assert handle.status.success == 1 and handle.status.skipped == 0, handle.status
    assert len(list(counter.iterdir())) == 2  # executed again
    assert json.loads(path.read_text())["status"] == "success"


def test_a_record_that_cannot_be_read_after_the_claim_is_not_executed_over(tmp_path, monkeypatch):
    # an I/O error is not "no record": the run may have succeeded; executing could repeat it
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="cl", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[2]), seeds=seeds(0, 1))

    def unreadable(self, run_id):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, os.strerror(errno.EIO), f"{run_id}.json")

    monkeypatch.setattr(FileStore, "get_run_record", unreadable)
    handle = run(exp, store=tmp_path)
    assert handle.wait(timeout=30)
    st = handle.status
    assert (st.failed, st.success, st.done) == (1, 0, 1), st
    assert list(counter.iterdir()) == []  # the operation was not called
    assert _claims(tmp_path / "cl_1") == []  # and the claim was released
    assert _raw(tmp_path / "cl_1") == {}


_BEATS_SCRIPT = """
import os, sys, threading, time
from metalab.execution._claims import Heartbeat
from metalab.model import RunRecord, Status

class Counting:  # the two store calls a heartbeat makes
    def __init__(self):
        self.lock = threading.Lock()
        self.beats = {}
    def touch_heartbeat(self, run_id, owner):
        with self.lock:
            self.beats[run_id] = self.beats.get(run_id, 0) + 1
        return True
    def put_run_record(self, record, durable=True):
        pass

def beat_many(store, n):
    barrier = threading.Barrier(n)
    hbs = []
    def start(i):
        barrier.wait()  # first use of the shared thread from n threads at once
        rec = RunRecord(run_id=f"r{i}", experiment_id="e:1", status=Status.RUNNING)
        hbs.append(Heartbeat(store, rec, "me", 0.05).start())
    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(store.beats) < n or min(store.beats.values()) < 3):
        time.sleep(0.01)
    [h.stop() for h in hbs]
    names = [t.name for t in threading.enumerate() if t.name == "metalab-heartbeat"]
    return len(store.beats), min(store.beats.values(), default=0), len(names)

print("parent", *beat_many(Counting(), 16), flush=True)
pid = os.fork()
if pid == 0:
    print("child", *beat_many(Counting(), 8), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_every_heartbeat_beats_from_one_thread_also_after_fork():
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = [{str(SRC)!r}]\n"
                          + _BEATS_SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = {w[0]: tuple(map(int, w[1:])) for w in (ln.split() for ln in out.stdout.splitlines())}
    assert set(seen) == {"parent", "child"}, out.stdout
    for who, n in (("parent", 16), ("child", 8)):
        runs, fewest_beats, threads = seen[who]
        # every run beat (at least three times), from one heartbeat thread in each process
        assert (runs, threads) == (n, 1) and fewest_beats >= 3, (who, out.stdout)


def test_a_run_whose_log_cannot_be_opened_leaves_no_heartbeat_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("METALAB_HEARTBEAT_INTERVAL", "0.05")
    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="nl", version="1", context={"counter_dir": str(counter)},
                     operation=liveness_ops.napping, params=grid(x=[1]), seeds=seeds(0, 1))
    folder = tmp_path / "nl_1"
    folder.mkdir()
    (folder / "logs").write_text("a file where the logs folder should be")
    handle = run(exp, store=tmp_path)
    assert handle.wait(timeout=30)
    assert handle.status.failed == 1 and list(counter.iterdir()) == []  # it never ran
    time.sleep(0.3)  # several heartbeat intervals: nothing may write for it any more
    assert not any(d.get("status") == "running" for d in _raw(folder).values()), _raw(folder)
    assert _claims(folder) == []
