"""Per-run capture of print() and warnings (metalab.execution._stdio): faults.

These tests fail when a logging handler that writes to ``sys.stdout`` at
emit time deadlocks a run whose log cannot be written, when a stale proxy
left as ``sys.stdout`` makes a run's log get its lines twice, or when a
failure while entering the capture leaves the streams routed.
"""

from __future__ import annotations

import errno
import io
import logging
import sys
import threading
from pathlib import Path

import pytest

from metalab.execution import _stdio
from metalab.execution._capture import RunLog
from metalab.execution._stdio import route_std
from metalab.store import FileStore

#: seconds after which a hanging run fails its test
HANG_S = 20


class _HandlerWritingToStdout(logging.Handler):
    """Resolves ``sys.stdout`` when it emits, as rich's RichHandler with its default console."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(self.format(record) + "\n")


@pytest.mark.timeout(HANG_S * 2)
def test_a_handler_writing_to_stdout_does_not_deadlock_a_run_whose_log_fails(tmp_path, monkeypatch):
    def disk_full(self, text):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunLog, "write", disk_full)
    handler = _HandlerWritingToStdout()
    logger = logging.getLogger("metalab.execution")
    logger.addHandler(handler)
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    store = FileStore(tmp_path, "exp")

    def one_run() -> None:
        with route_std(store, "r1"):
            print("a line the disk has no room for")

    try:
        t = threading.Thread(target=one_run, daemon=True)
        t.start()
        t.join(HANG_S)
    finally:
        logger.removeHandler(handler)
    assert not t.is_alive(), "the run deadlocked reporting that its log cannot be written"
    shown = terminal.getvalue()
    assert "a line the disk has no room for" in shown
    assert "run r1: its stdout can no longer be captured" in shown


def _log(root: Path, name: str) -> str:
    return (root / "exp" / "logs" / name).read_text()


def test_a_stale_proxy_left_as_stdout_does_not_double_a_runs_lines(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    store = FileStore(tmp_path, "exp")
    with route_std(store, "r1"):
        proxy = sys.stdout
        sys.stdout = io.StringIO()  # someone swaps the stream meanwhile (a progress display)
    sys.stdout = proxy  # ... and restores the proxy after the run ended
    with route_std(store, "r2"):
        print("hello once")
    assert _log(tmp_path, "r2_stdout.log") == "hello once\n"
    assert terminal.getvalue() == "hello once\n"


def test_a_failure_entering_the_capture_leaves_nothing_routed(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)

    def broken() -> None:
        raise RuntimeError("warnings machinery broke")

    monkeypatch.setattr(_stdio, "_forget_shown_warnings", broken)
    with pytest.raises(RuntimeError, match="warnings machinery broke"), \
            route_std(FileStore(tmp_path, "exp"), "r1"):
        pytest.fail("the body must not run")
    assert sys.stdout is terminal
    assert _stdio._CURRENT.get() is None
