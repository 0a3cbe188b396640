"""print() and warnings of an operation captured per run with every executor, tee'd on a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import live_ops
import pytest

import metalab
from metalab.execution import DaskExecutor, ProcessExecutor, SerialExecutor, ThreadExecutor, run


def _exp(op, xs=(1, 2, 3)):
    return metalab.Experiment(
        name="out", version="1", context={}, operation=op,
        params=metalab.grid(x=list(xs)), seeds=metalab.seeds(0),
    )


def _logs(root: Path, exp) -> dict[int, tuple[str, str]]:
    """x -> (stdout log, stderr log) of each run."""
    folder = Path(root) / "out_1" / "logs"
    found = {}
    for spec in exp.iter_specs():
        texts = []
        for name in ("stdout", "stderr"):
            path = folder / f"{spec.run_id}_{name}.log"
            texts.append(path.read_text() if path.exists() else "")
        found[spec.params["x"]] = (texts[0], texts[1])
    return found


def _assert_own_output_only(logs: dict[int, tuple[str, str]]) -> None:
    for x, (out, err) in logs.items():
        assert [line for line in out.splitlines()] == [f"print of {x} line {i}" for i in range(5)]
        assert f"stderr of {x}" in err and f"warning of {x}" in err and "UserWarning" in err
        others = [o for o in logs if o != x]
        assert not any(f"of {o}" in out + err for o in others)


def test_serial_prints_go_to_the_run_log_and_still_reach_the_terminal(tmp_path, capsys):
    before = (sys.stdout, sys.stderr)
    exp = _exp(live_ops.talker)
    handle = run(exp, store=tmp_path, executor=SerialExecutor(), progress=False)
    assert handle.status.success == 3
    _assert_own_output_only(_logs(tmp_path, exp))  # (each run's warning too: not shown once only)
    captured = capsys.readouterr()
    assert "print of 2 line 4" in captured.out  # tee: the user still sees the prints
    assert "stderr of 3" in captured.err
    assert (sys.stdout, sys.stderr) == before


def test_thread_runs_each_capture_their_own_prints(tmp_path):
    before = (sys.stdout, sys.stderr)
    exp = _exp(live_ops.talker, xs=(1, 2, 3, 4))
    handle = run(exp, store=tmp_path, executor=ThreadExecutor(4), progress=False)
    handle.wait(timeout=60)
    assert handle.status.success == 4
    _assert_own_output_only(_logs(tmp_path, exp))
    assert (sys.stdout, sys.stderr) == before


def test_streams_are_restored_after_an_interrupt(tmp_path):
    before = (sys.stdout, sys.stderr)
    exp = _exp(live_ops.prints_then_interrupts, xs=(1,))
    with pytest.raises(KeyboardInterrupt):
        run(exp, store=tmp_path, progress=False)
    assert (sys.stdout, sys.stderr) == before
    assert "before the interrupt 1" in _logs(tmp_path, exp)[1][0]


def test_a_run_without_output_leaves_no_stdout_log(tmp_path):
    exp = _exp(live_ops.fails_on_two, xs=(1,))
    run(exp, store=tmp_path, progress=False)
    assert _logs(tmp_path, exp)[1] == ("", "")
    assert not list((tmp_path / "out_1" / "logs").glob("*_stdout.log"))


def test_process_runs_capture_each_print_once(tmp_path):
    exp = _exp(live_ops.talker, xs=(1, 2))
    handle = run(exp, store=tmp_path, executor=ProcessExecutor(2), progress=False)
    handle.wait(timeout=120)
    assert handle.status.success == 2
    _assert_own_output_only(_logs(tmp_path, exp))


def test_dask_runs_capture_their_prints(tmp_path, dask_client):
    exp = _exp(live_ops.talker, xs=(1, 2))
    handle = run(exp, store=tmp_path, executor=DaskExecutor(dask_client), progress=False)
    handle.wait(timeout=120)
    assert handle.status.success == 2
    _assert_own_output_only(_logs(tmp_path, exp))
