"""Behaviour of metalab.run(): records, resume, failures, logs, events, executors."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import exec_ops
import pytest

from metalab.definition import Experiment, grid, seeds
from metalab.execution import (
    Event,
    EventKind,
    ProcessExecutor,
    RunStatus,
    SerialExecutor,
    ThreadExecutor,
    run,
)


def make_exp(op, root, *, xs=(1, 2, 3), replicates=2, name="exp", version="1", **ctx):
    context = {"root": str(root), **ctx}
    return Experiment(
        name=name,
        version=version,
        context=context,
        operation=op,
        params=grid(x=list(xs)),
        seeds=seeds(0, replicates),
    )


def exp_dir(root: Path, name: str = "exp", version: str = "1") -> Path:
    return Path(root) / f"{name}_{version}"


def raw_records(root: Path, name: str = "exp") -> dict[str, dict]:
    folder = exp_dir(root, name) / "runs"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def executions(counter: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in counter.iterdir():
        rid = p.name.split(".")[0]
        out[rid] = out.get(rid, 0) + 1
    return out


# ----------------------------------------------------------------------- basics
def test_params_times_replicates_all_succeed(tmp_path):
    exp = make_exp(exec_ops.basic, tmp_path, xs=(1, 2, 3), replicates=2)
    handle = run(exp, store=tmp_path)
    assert handle.status == RunStatus(
        total=6, done=6, success=6, failed=0, cancelled=0, running=0, pending=0, skipped=0
    )
    recs = raw_records(tmp_path)
    assert len(recs) == 6
    assert {r["status"] for r in recs.values()} == {"success"}
    by_x = {(r["params"]["x"], r["seed"]["replicate_index"]) for r in recs.values()}
    assert by_x == {(x, i) for x in (1, 2, 3) for i in (0, 1)}
    one = next(iter(recs.values()))
    # captured metric, returned dict merged in, provenance filled
    assert one["metrics"]["y"] == one["params"]["x"] * 2
    assert one["metrics"]["z"] == one["params"]["x"] + 0.5
    assert one["attempt"] == 1
    assert one["provenance"]["executor"] == "serial"
    assert one["provenance"]["host"] and one["provenance"]["pid"]
    assert one["provenance"]["operation_ref"] == "exec_ops:basic"
    # manifest written with every run id and submission info
    manifests = list((exp_dir(tmp_path) / "experiments").glob("*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert sorted(manifest["run_ids"]) == sorted(recs)
    assert manifest["executor"] == "serial" and manifest["submitted_at"]
    results = handle.result(timeout=5)
    assert len(results) == 6


def test_resume_skips_success_and_reruns_failed(tmp_path):
    flag = tmp_path / "fail.flag"
    flag.write_text("1")
    counter = tmp_path / "count"
    counter.mkdir()
    exp = make_exp(exec_ops.basic, tmp_path, fail_flag=str(flag), counter_dir=str(counter))
    first = run(exp, store=tmp_path)
    assert first.status.failed == 2 and first.status.success == 4
    flag.unlink()
    events: list[Event] = []
    second = run(exp, store=tmp_path, on_event=events.append)
    st = second.status
    assert (st.skipped, st.success, st.failed, st.done, st.total) == (4, 2, 0, 6, 6)
    counts = executions(counter)
    recs = raw_records(tmp_path)
    for rid, rec in recs.items():
        assert rec["status"] == "success"
        expected = 2 if rec["params"]["x"] == 2 else 1
        assert counts[rid] == expected
        assert rec["attempt"] == expected
    assert sum(e.kind is EventKind.RUN_SKIPPED for e in events) == 4
    assert all(e.reason for e in events if e.kind is EventKind.RUN_SKIPPED)
    # result() never hangs when runs were skipped
    assert len(second.result(timeout=5)) == 6
    # resume=False reruns everything
    run(exp, store=tmp_path, resume=False)
    assert sum(executions(counter).values()) == 6 + 2 + 6


def test_failing_op_writes_failed_record_with_traceback(tmp_path):
    exp = make_exp(exec_ops.failing, tmp_path, xs=(7,), replicates=1)
    events: list[Event] = []
    handle = run(exp, store=tmp_path, on_event=events.append)
    (rec,) = raw_records(tmp_path).values()
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "RuntimeError"
    assert "intentional failure 7" in rec["error"]["message"]
    assert "Traceback" in rec["error"]["traceback"] and "exec_ops.py" in rec["error"]["traceback"]
    assert rec["finished_at"] and rec["duration_ms"] is not None
    assert handle.status.failed == 1
    assert [e.kind for e in events] == [EventKind.RUN_STARTED, EventKind.RUN_FAILED]
    assert events[1].error is not None and events[1].error.type == "RuntimeError"


def test_keyboard_interrupt_in_op_cancels_and_reraises(tmp_path):
    exp = make_exp(exec_ops.interrupting, tmp_path, xs=(0, 1, 2, 3), replicates=1)
    with pytest.raises(KeyboardInterrupt):
        run(exp, store=tmp_path)
    recs = raw_records(tmp_path)
    by_x = {r["params"]["x"]: r for r in recs.values()}
    assert by_x[0]["status"] == "success"
    assert by_x[1]["status"] == "cancelled"
    assert by_x[1]["error"]["type"] == "KeyboardInterrupt"
    assert by_x[1]["metrics"] == {"before": 1}  # captured values kept
    assert 2 not in by_x and 3 not in by_x  # pending runs never started


def test_keyboard_interrupt_in_thread_run_gives_cancelled_record(tmp_path):
    exp = make_exp(exec_ops.interrupting, tmp_path, xs=(1,), replicates=1)
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(2))
    handle.wait(timeout=10)
    (rec,) = raw_records(tmp_path).values()
    assert rec["status"] == "cancelled"
    assert handle.status.cancelled == 1


# ------------------------------------------------------------------------- logs
def test_logs_stream_during_run_and_python_logging_is_captured(tmp_path):
    exp = make_exp(exec_ops.logging_op, tmp_path, xs=(5,), replicates=1)
    root_level = logging.getLogger().level
    run(exp, store=tmp_path)
    (rec,) = raw_records(tmp_path).values()
    assert rec["status"] == "success", rec["error"]
    assert rec["metrics"]["saw_own_log"] is True
    assert rec["metrics"]["saw_py_log"] is True
    text = (exp_dir(tmp_path) / "logs" / f"{rec['run_id']}_run.log").read_text()
    assert "attempt 1 started" in text
    assert "capture logger 5" in text
    assert logging.getLogger().level == root_level  # restored
    # nothing is routed after the run
    logging.getLogger("userlib.module").warning("after the run")
    assert "after the run" not in (exp_dir(tmp_path) / "logs" / f"{rec['run_id']}_run.log").read_text()


def test_rerun_appends_attempt_header(tmp_path):
    exp = make_exp(exec_ops.logging_op, tmp_path, xs=(1,), replicates=1)
    run(exp, store=tmp_path)
    run(exp, store=tmp_path, resume=False)
    (rec,) = raw_records(tmp_path).values()
    text = (exp_dir(tmp_path) / "logs" / f"{rec['run_id']}_run.log").read_text()
    assert "attempt 1 started" in text and "attempt 2 started" in text
    assert text.index("attempt 1 ended") < text.index("attempt 2 started")
    assert text.count("hello from 1") == 2
    assert rec["attempt"] == 2


def test_a_run_without_output_leaves_no_log_and_a_rerun_marks_an_earlier_log(tmp_path):
    quiet = make_exp(exec_ops.basic, tmp_path, xs=(1,), replicates=1, name="quiet")
    run(quiet, store=tmp_path)
    assert not (exp_dir(tmp_path, "quiet") / "logs").exists() or not any(
        (exp_dir(tmp_path, "quiet") / "logs").iterdir())
    # a run that logged, rerun by an attempt that does not: its log says attempt 2 ran
    chatty = make_exp(exec_ops.logging_op, tmp_path, xs=(1,), replicates=1, name="same")
    run(chatty, store=tmp_path)
    silent = make_exp(exec_ops.basic, tmp_path, xs=(1,), replicates=1, name="same")
    assert [s.run_id for s in silent.iter_specs()] == [s.run_id for s in chatty.iter_specs()]
    run(silent, store=tmp_path, resume=False)
    (rec,) = raw_records(tmp_path, "same").values()
    text = (exp_dir(tmp_path, "same") / "logs" / f"{rec['run_id']}_run.log").read_text()
    *_, started, ended = text.splitlines()
    assert "=== attempt 2 started" in started and "=== attempt 2 ended: success" in ended


def test_concurrent_thread_runs_do_not_mix_logs(tmp_path):
    exp = make_exp(exec_ops.chatty, tmp_path, xs=(1, 2), replicates=1)
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(2))
    handle.wait(timeout=20)
    recs = raw_records(tmp_path)
    assert {r["status"] for r in recs.values()} == {"success"}
    for rid, rec in recs.items():
        text = (exp_dir(tmp_path) / "logs" / f"{rid}_run.log").read_text()
        mine, other = f"TAG-{rec['params']['x']}", f"TAG-{3 - rec['params']['x']}"
        assert text.count(mine) == 40
        assert other not in text


# ---------------------------------------------------------------------- capture
def test_stepped_metric_is_stored_as_series_not_in_record(tmp_path):
    exp = Experiment(
        name="exp", version="1", context={}, operation=exec_ops.stepped,
        params=grid(n=[100_000]), seeds=seeds(0, 1),
    )
    handle = run(exp, store=tmp_path)
    (path,) = (exp_dir(tmp_path) / "runs").glob("*.json")
    assert path.stat().st_size < 5_000
    rec = json.loads(path.read_text())
    assert rec["metrics"] == {"final": 0.5}
    assert rec["series"] == ["loss"]
    payload = handle.store.get_data(rec["run_id"], "loss")
    assert payload["kind"] == "series"
    assert len(payload["data"]["step"]) == 100_000
    assert payload["data"]["value"][3] == pytest.approx(0.25)


def test_capture_artifacts_data_scratch_and_name_checks(tmp_path):
    exp = Experiment(
        name="exp", version="1", context={}, operation=exec_ops.scratch_user,
        params=grid(x=[1]), seeds=seeds(0, 1),
    )
    handle = run(exp, store=tmp_path)
    (rec,) = raw_records(tmp_path).values()
    assert rec["status"] == "success", rec["error"]
    assert not os.path.exists(rec["metrics"]["scratch"])  # scratch dir deleted
    assert rec["metrics"]["conflict_error"] == "ValidationError"
    assert rec["metrics"]["name_error"] == "InvalidNameError"
    arts = {a["name"]: a for a in rec["artifacts"]}
    assert arts["from_path"]["kind"] == "file" and arts["from_path"]["format"] == "txt"
    assert arts["obj"]["kind"] == "json"
    store = handle.store
    assert store.get_artifact_bytes(rec["run_id"], "from_path") == b"hello"
    assert sorted(rec["data"]) == ["arr", "table"]
    arr = store.get_data(rec["run_id"], "arr")
    assert arr["dtype"] == "float32" and arr["shape"] == [2, 3] and arr["kind"] == "data"
    assert rec["series"] == ["curve"]


def test_derived_metrics_are_stored_and_failures_only_warn(tmp_path, caplog):
    exp = make_exp(exec_ops.basic, tmp_path, xs=(3,), replicates=1)
    with caplog.at_level(logging.WARNING):
        handle = run(
            exp, store=tmp_path,
            derived_metrics=["exec_ops:derived_double", exec_ops.derived_broken],
        )
    (rec,) = raw_records(tmp_path).values()
    assert rec["status"] == "success"
    assert handle.store.get_derived(rec["run_id"]) == {"double_y": 12}
    assert "derived failure" in caplog.text


# ------------------------------------------------------------------- executors
def test_thread_and_process_executors_give_same_run_ids(tmp_path):
    ids = {}
    for label, executor in (
        ("serial", SerialExecutor()),
        ("thread", ThreadExecutor(3)),
        ("process", ProcessExecutor(2)),
    ):
        root = tmp_path / label
        exp = make_exp(exec_ops.basic, tmp_path, xs=(1, 2), replicates=2)  # same context
        handle = run(exp, store=root, executor=executor)
        assert handle.wait(timeout=60)
        recs = raw_records(root)
        assert {r["status"] for r in recs.values()} == {"success"}
        assert {r["provenance"]["executor"] for r in recs.values()} == {label}
        ids[label] = set(recs)
    assert ids["serial"] == ids["thread"] == ids["process"]
    assert len(ids["serial"]) == 4


def test_process_executor_captures_stdout_and_stderr(tmp_path):
    exp = make_exp(exec_ops.printer, tmp_path, xs=(1, 2), replicates=1)
    events: list[Event] = []
    handle = run(exp, store=tmp_path, executor=ProcessExecutor(2), on_event=events.append)
    results = handle.result(timeout=60)
    assert len(results) == 2
    recs = raw_records(tmp_path)
    for rid, rec in recs.items():
        assert rec["status"] == "success", rec["error"]
        assert rec["metrics"]["pid"] != os.getpid()
        logs = exp_dir(tmp_path) / "logs"
        assert f"printed by {rec['params']['x']}" in (logs / f"{rid}_stdout.log").read_text()
        assert f"stderr of {rec['params']['x']}" in (logs / f"{rid}_stderr.log").read_text()
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.RUN_STARTED) == 2 and kinds.count(EventKind.RUN_FINISHED) == 2
    for rid in recs:
        mine = [e.kind for e in events if e.run_id == rid]
        assert mine == [EventKind.RUN_STARTED, EventKind.RUN_FINISHED]


def test_process_executor_rejects_local_operation(tmp_path):
    from metalab._errors import OperationImportError
    from metalab.definition import operation

    @operation
    def local_op(params):
        return None

    exp = make_exp(local_op, tmp_path, xs=(1,), replicates=1)
    with pytest.raises(OperationImportError):
        run(exp, store=tmp_path, executor=ProcessExecutor(1))


# ---------------------------------------------------------- events and status
def test_events_order_and_kinds(tmp_path):
    exp = make_exp(exec_ops.basic, tmp_path, xs=(1, 2), replicates=1)
    events: list[Event] = []

    def bad_callback(event: Event) -> None:
        raise RuntimeError("callback errors are not fatal")

    run(exp, store=tmp_path, on_event=events.append)
    # per run: started, then finished (a serial run's end is reported once its record
    # is durable, which a group commit may do after the next run started)
    assert len(events) == 4
    for rid in {e.run_id for e in events}:
        assert [e.kind for e in events if e.run_id == rid] == [
            EventKind.RUN_STARTED, EventKind.RUN_FINISHED]
    finished = [e for e in events if e.kind is EventKind.RUN_FINISHED]
    assert finished[0].metrics["y"] in (2, 4) and finished[0].duration_ms is not None
    assert all(e.experiment_id == "exp:1" for e in events)
    handle = run(exp, store=tmp_path, on_event=bad_callback)
    assert handle.status.skipped == 2


def test_cancel_stops_running_and_pending_runs(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    exp = make_exp(exec_ops.slow, tmp_path, xs=range(6), replicates=1, started_dir=str(started))
    events: list[Event] = []
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(2), on_event=events.append)
    deadline = time.monotonic() + 10
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.status.running == 2
    handle.cancel()
    results = handle.result(timeout=20)
    st = handle.status
    assert st.cancelled == 6 and st.done == 6 and st.success == 0
    recs = raw_records(tmp_path)
    assert len(recs) == 2  # the queued runs never started
    assert {r["status"] for r in recs.values()} == {"cancelled"}
    assert {r["error"]["type"] for r in recs.values()} == {"RunCancelledError"}
    assert len(results) == 2
    assert sum(e.kind is EventKind.RUN_CANCELLED for e in events) == 6


def test_status_while_running_in_threads(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    exp = make_exp(exec_ops.slow, tmp_path, xs=range(3), replicates=1, started_dir=str(started))
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(1))
    deadline = time.monotonic() + 10
    while not list(started.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    st = handle.status
    assert (st.total, st.running, st.pending, st.done) == (3, 1, 2, 0)
    handle.cancel()
    assert handle.wait(timeout=20)
    # the executor is shut down once the submission has ended
    assert not [t for t in threading.enumerate() if t.name.startswith("metalab_")]


def test_code_change_warns_on_resume_but_keeps_ids(tmp_path, caplog):
    exp1 = make_exp(exec_ops.basic, tmp_path, xs=(1,), replicates=1)
    exp2 = make_exp(exec_ops.basic_v2, tmp_path, xs=(1,), replicates=1)
    assert exp1.operation.code_hash != exp2.operation.code_hash
    run(exp1, store=tmp_path)
    with caplog.at_level(logging.WARNING, logger="metalab.execution"):
        handle = run(exp2, store=tmp_path)
    assert "changed" in caplog.text
    assert handle.status.skipped == 1  # same run id: skipped on resume
    assert [s.run_id for s in exp1.iter_specs()] == [s.run_id for s in exp2.iter_specs()]


def test_store_instance_and_bad_arguments(tmp_path):
    from metalab._errors import ValidationError
    from metalab.store import FileStoreConfig

    exp = make_exp(exec_ops.basic, tmp_path, xs=(1,), replicates=1)
    store = FileStoreConfig(root=str(tmp_path)).connect()
    handle = run(exp, store=store)
    assert handle.store.experiment_id == "exp:1"
    assert handle.experiment_id == "exp:1"
    with pytest.raises(ValidationError):
        run(exp, store=tmp_path, executor="threads")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        run(exp, store=tmp_path, derived_metrics=["no_colon"])
    with pytest.raises(ValidationError):
        ThreadExecutor(0)


def test_progress_bar_shows_the_counts_and_latest_metrics(tmp_path, capsys, monkeypatch):
    import rich.console

    # the bar draws on rich's shared console: a wide one, so no column is cut short
    monkeypatch.setattr("rich._console", rich.console.Console(width=200))
    flag = tmp_path / "fail.flag"
    flag.write_text("")
    exp = make_exp(exec_ops.basic, tmp_path, xs=(1, 2, 3), replicates=1, fail_flag=str(flag))
    handle = run(exp, store=tmp_path, progress=True)
    assert (handle.status.success, handle.status.failed) == (2, 1)
    out = capsys.readouterr().out
    assert "exp:1" in out
    assert "3/3" in out
    assert "ok 2 failed 1 running 0" in out
    assert "y=6 seed_index=0" in out  # the metrics of the last run that succeeded (x=3)
    flag.unlink()
    run(exp, store=tmp_path, progress=True)  # resume: the two successes are skipped
    out = capsys.readouterr().out
    assert "3/3" in out
    assert "ok 1 failed 0 running 0 skipped 2" in out
    assert "y=4" in out
    run(exp, store=tmp_path)  # no bar unless asked
    assert capsys.readouterr().out == ""


def test_sigterm_during_serial_run_gives_cancelled_record(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    exp = make_exp(exec_ops.terminated, tmp_path, xs=(1, 2), replicates=1)
    with pytest.raises(SystemExit):
        run(exp, store=tmp_path)
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    recs = {r["params"]["x"]: r for r in raw_records(tmp_path).values()}
    assert recs[1]["status"] == "cancelled" and recs[1]["error"]["type"] == "SystemExit"
    assert 2 not in recs


def test_ctrl_c_during_result_cancels_and_reraises(tmp_path, interactive_sigint):
    import signal

    started = tmp_path / "started"
    started.mkdir()
    exp = make_exp(exec_ops.slow, tmp_path, xs=range(4), replicates=1, started_dir=str(started))
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(1))
    timer = threading.Timer(0.3, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        handle.result(timeout=20)
    timer.join()
    assert handle.cancelled
    assert handle.wait(timeout=20)
    st = handle.status
    assert st.cancelled == 4 and st.done == 4
    assert {r["status"] for r in raw_records(tmp_path).values()} == {"cancelled"}


def test_result_holds_exactly_the_runs_of_the_submission(tmp_path):
    # the grid under one experiment id changed between submissions: result() of the
    # second submission holds its own runs (run before or now), not the first grid's
    first = run(make_exp(exec_ops.basic, tmp_path, xs=(1, 2, 3)), store=tmp_path)
    assert len(first.result()) == 6
    exp2 = make_exp(exec_ops.basic, tmp_path, xs=(3, 4))
    second = run(exp2, store=tmp_path)
    assert (second.status.skipped, second.status.success) == (2, 2)
    res = second.result()
    assert sorted(res.run_ids) == sorted(s.run_id for s in exp2.iter_specs())
    assert sorted(r.params["x"] for r in res) == [3, 3, 4, 4]
    assert len(raw_records(tmp_path)) == 8  # every run stays in the store
    with ThreadExecutor(2) as ex:
        third = run(exp2, store=tmp_path, executor=ex, resume=False)
        assert len(third.result()) == 4


@pytest.mark.parametrize(("value", "match"), [(2**70, "beyond 64 bits"), (b"ab", "bytes")])
def test_a_parameter_json_cannot_hold_is_refused_before_any_run(tmp_path, value, match):
    # such values have run ids (the canonical encoding accepts them), but no run record
    # could hold them: run() says so, with what to do, before anything executes
    import metalab

    counter = tmp_path / "count"
    counter.mkdir()
    exp = Experiment(name="big", version="1", context={"counter_dir": str(counter)},
                     operation=exec_ops.basic, params=grid(x=[1], extra=[value]), seeds=seeds(0, 1))
    with pytest.raises(metalab.ValidationError, match=match):
        run(exp, store=tmp_path)
    assert not list(counter.iterdir())
    assert not list(tmp_path.rglob("runs/*.json"))


_UNCONFIGURED_LOGGING_SCRIPT = """
import sys
import metalab

def op(params, capture):
    capture.metric("y", params["x"])

def bad(record):
    raise ValueError("derived boom")

exp = metalab.Experiment(name="lastresort", version="1", context={}, operation=op,
                         params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(0))
handle = metalab.run(exp, store=sys.argv[1], derived_metrics=[bad])
print("success", handle.status.success)
"""


@pytest.mark.parametrize("executor", ["serial", "thread"])
def test_warnings_between_runs_reach_stderr_when_logging_is_not_configured(tmp_path, executor):
    """The log routing must not swallow warnings emitted outside a run (here: a derived
    metric that fails after its run ended) when the user configured no logging."""
    import subprocess
    import sys

    script = _UNCONFIGURED_LOGGING_SCRIPT
    if executor == "thread":
        script = script.replace("derived_metrics=[bad])",
                                "derived_metrics=[bad], executor=metalab.ThreadExecutor(2))\n"
                                "handle.wait()")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "exp")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "success 2" in out.stdout
    assert "derived boom" in out.stderr, out.stderr
