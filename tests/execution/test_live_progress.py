"""Progress on by default on a terminal, log lines elsewhere; failed runs reported as they happen."""

from __future__ import annotations

import logging
import threading

import live_ops
import pytest
import rich.console

import metalab
from metalab.execution import ThreadExecutor, _progress, run

WAIT_S = 30.0


def _exp(op, xs=(1, 2, 3)):
    return metalab.Experiment(
        name="prog", version="1", context={}, operation=op,
        params=metalab.grid(x=list(xs)), seeds=metalab.seeds(0),
    )


def _failed_id(exp) -> str:
    (rid,) = [s.run_id for s in exp.iter_specs() if s.params["x"] == 2]
    return rid


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.failed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if "failed:" in record.getMessage():
            self.failed.set()

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def progress_records():
    handler = _Records()
    logger = logging.getLogger("metalab.progress")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_off_a_terminal_progress_is_log_lines_and_no_bar(tmp_path, capsys, progress_records):
    exp = _exp(live_ops.fails_on_two)
    handle = run(exp, store=tmp_path)
    assert (handle.status.success, handle.status.failed) == (2, 1)
    captured = capsys.readouterr()
    assert "━" not in captured.out + captured.err  # no bar drawn into a pipe
    messages = progress_records.messages()
    failures = [m for m in messages if "failed:" in m]
    assert len(failures) == 1
    assert f"run {_failed_id(exp)} failed: ValueError: bad x 2" in failures[0]
    assert "second line" not in failures[0]
    assert "Traceback" not in "\n".join(messages)
    assert messages[-1].startswith("prog:1: 3/3 done (ok 2, failed 1, running 0)")


def test_progress_false_reports_nothing(tmp_path, capsys, progress_records):
    run(_exp(live_ops.fails_on_two), store=tmp_path, progress=False)
    assert progress_records.messages() == []
    assert capsys.readouterr().out == ""


def test_on_a_terminal_the_bar_is_on_by_default_and_prints_failures(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr("rich._console", rich.console.Console(width=200))
    monkeypatch.setattr(_progress, "on_terminal", lambda: True)
    exp = _exp(live_ops.fails_on_two)
    run(exp, store=tmp_path)
    out = capsys.readouterr().out
    assert "3/3" in out and "ok 2 failed 1 running 0" in out
    assert f"run {_failed_id(exp)} failed: ValueError: bad x 2" in out
    assert "second line" not in out and "Traceback" not in out


def test_a_failed_run_is_reported_while_the_others_still_run(tmp_path, progress_records):
    live_ops.RELEASE.clear()
    handle = run(_exp(live_ops.fails_or_waits, xs=(1, 2)), store=tmp_path,
                 executor=ThreadExecutor(2))
    try:
        assert progress_records.failed.wait(WAIT_S), progress_records.messages()
        assert not handle.done  # the run x=1 still waits: the failure was reported as it happened
    finally:
        live_ops.RELEASE.set()
    handle.wait(timeout=WAIT_S)
    failures = [m for m in progress_records.messages() if "failed:" in m]
    assert len(failures) == 1 and "ValueError: bad x 2" in failures[0]


def test_only_the_first_failures_are_listed(tmp_path, progress_records, monkeypatch):
    monkeypatch.setattr(_progress, "MAX_FAILURES_SHOWN", 2)
    exp = metalab.Experiment(name="prog", version="1", context={},
                             operation=live_ops.fails_on_two,
                             params=metalab.grid(x=[2]), seeds=metalab.seeds(0, 5))
    run(exp, store=tmp_path)
    messages = progress_records.messages()
    assert len([m for m in messages if "failed:" in m]) == 2
    assert "(further failed runs are only counted)" in messages[1]
    assert messages[-1].startswith("prog:1: 5/5 done (ok 0, failed 5")


def test_progress_must_be_a_bool_or_none(tmp_path):
    with pytest.raises(metalab.ValidationError, match="progress must be True, False or None"):
        run(_exp(live_ops.fails_on_two), store=tmp_path, progress="yes")  # type: ignore[arg-type]


def test_failures_for_a_full_disk_are_not_listed_one_by_one(progress_records):
    from metalab.execution._events import Event, EventKind
    from metalab.model import ErrorInfo

    reporter = _progress.ProgressLog("full:1", 3)
    for rid in ("a", "b", "c"):
        error = ErrorInfo("OSError", "[Errno 28] No space left on device", "")
        reporter(Event(EventKind.RUN_FAILED, rid, "full:1", error=error))
    reporter.stop()
    messages = progress_records.messages()
    assert messages[0] == ("full:1: run a failed: the disk is full; the runs that fail for it "
                           "are reported when the submission ends")
    assert not any("No space left on device" in m for m in messages)
    assert messages[-1].startswith("full:1: 3/3 done (ok 0, failed 3")
