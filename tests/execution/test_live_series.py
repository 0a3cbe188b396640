"""Metric series visible while a run is going: the live series file and its readers."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import live_ops
import pytest
from click.testing import CliRunner

import metalab
from metalab.analysis import load_results
from metalab.cli import cli as cli_main
from metalab.execution import ProcessExecutor, ThreadExecutor, run
from metalab.store import FileStore, FileStoreConfig, LiveSeriesWriter
from metalab.store._series import FLUSH_INTERVAL_S, LIVE_SERIES_FILE, read_live_series_file

#: longest a test waits for a running run to show its steps
WAIT_S = 30.0


def _exp(op, **context):
    return metalab.Experiment(
        name="live", version="1", context=context, operation=op,
        params=metalab.grid(x=[1]), seeds=metalab.seeds(0),
    )


def _assert_points(points):
    assert [s for s, _ in points[:3]] == [0, 1, 2]
    assert points[0][1] == 1.5 and points[1][1] == math.inf and math.isnan(points[2][1])


def _wait_for_live_steps(root: Path, n: int) -> tuple[str, list]:
    """(run id, points of ``loss``) once a running run of ``live:1`` shows ``n`` steps."""
    end = time.monotonic() + WAIT_S
    seen: list = []
    while time.monotonic() < end:
        results = load_results(str(root), experiment_id="live:1")
        for run_ in results:
            if run_.status.value == "running":
                try:
                    seen = run_.metric_series("loss")
                except metalab.NotFoundError:
                    seen = []
                if len(seen) >= n:
                    return run_.run_id, seen
        time.sleep(0.05)
    raise AssertionError(f"no running run showed {n} steps within {WAIT_S} s (last seen {seen})")


@contextlib.contextmanager
def _running_thread_run(root: Path) -> Iterator[tuple[Any, str, list]]:
    """(handle, run id, points seen) of a thread run that waits after 3 steps; it is
    released on exit and waited for."""
    live_ops.REACHED.clear()
    live_ops.RELEASE.clear()
    handle = run(_exp(live_ops.steps_then_event), store=root, executor=ThreadExecutor(1))
    try:
        assert live_ops.REACHED.wait(WAIT_S)
        run_id, points = _wait_for_live_steps(root, 3)
        yield handle, run_id, points
    finally:
        live_ops.RELEASE.set()
        handle.wait(timeout=WAIT_S)


def test_a_thread_run_shows_its_steps_while_it_waits(tmp_path):
    with _running_thread_run(tmp_path) as (_, run_id, points):
        assert len(points) == 3
        _assert_points(points)
        loaded = load_results(str(tmp_path), experiment_id="live:1")
        running = loaded[run_id]
        assert running.live_series()["acc"] == [(0, 0.25)]
        # the tidy table of several runs shows the same steps so far
        tidy = loaded.metric_series(["loss", "acc"])
        rows = tidy[tidy["run_id"] == run_id]
        assert list(rows["name"]) == ["loss"] * 3 + ["acc"]
        assert list(rows["step"]) == [0, 1, 2, 0]
        assert rows["value"].iloc[0] == 1.5 and math.isinf(rows["value"].iloc[1])
    done = load_results(str(tmp_path), experiment_id="live:1")[run_id]
    assert done.status.value == "success"
    final = done.metric_series("loss")
    _assert_points(final)
    assert final[3] == (3, 0.5)
    # the final record is the truth: the live file is gone, the series documents are as before
    store = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="live:1"))
    assert not os.path.exists(store.live_series_path(run_id))
    assert store.list_data(run_id) == ["acc", "loss"]
    assert store.get_run_record(run_id).series == ("loss", "acc")


def test_a_process_run_shows_its_steps_to_another_process(tmp_path):
    gate = tmp_path / "gate"
    gate.write_text("x")
    reached = tmp_path / "reached"
    exp = _exp(live_ops.steps_then_gate, gate=str(gate), reached=str(reached))
    handle = run(exp, store=tmp_path / "store", executor=ProcessExecutor(1))
    try:
        end = time.monotonic() + WAIT_S
        while not reached.exists() and time.monotonic() < end:
            time.sleep(0.02)
        run_id, points = _wait_for_live_steps(tmp_path / "store", 3)
        _assert_points(points)
    finally:
        gate.unlink()
    handle.wait(timeout=WAIT_S)
    assert len(load_results(str(tmp_path / "store"), experiment_id="live:1")[run_id]
               .metric_series("loss")) == 4


def test_runs_show_lists_the_live_steps_of_a_running_run(tmp_path):
    with _running_thread_run(tmp_path) as (_, run_id, _points):
        out = CliRunner().invoke(cli_main, ["runs", "show", run_id, "--store", str(tmp_path)])
        assert out.exit_code == 0, out.output
        assert "series (live, steps so far):" in out.output
        assert "loss: 3 steps, last step 2 = nan" in out.output.lower()
    out = CliRunner().invoke(cli_main, ["runs", "show", run_id, "--store", str(tmp_path)])
    assert "series: loss, acc" in out.output


# ------------------------------------------------------------------ the file itself
def test_a_torn_last_line_is_ignored_and_other_attempts_are_not_shown(tmp_path):
    path = str(tmp_path / "results" / "r1" / LIVE_SERIES_FILE)
    writer = LiveSeriesWriter(path, attempt=2)
    writer.append("loss", 0, 0.1)
    writer.append("loss", 1, float("-inf"))
    writer.append("note", 0, "text")
    writer.close()
    with open(path, "ab") as fh:
        fh.write(b'["loss",[2],[0.12')  # a kill -9 in the middle of a write
    found = read_live_series_file(path, attempt=2)
    assert found["loss"] == ([0, 1], [0.1, -math.inf])
    assert found["note"] == ([0], ["text"])
    assert read_live_series_file(path, attempt=1) == {}  # another attempt's file
    assert read_live_series_file(str(tmp_path / "missing.jsonl")) == {}
    with open(path, "wb") as fh:
        fh.write(b'{"attempt":2,"live_ser')  # a torn header: nothing yet
    assert read_live_series_file(path) == {}


def test_a_garbled_line_inside_the_file_is_skipped_with_a_warning(tmp_path, caplog):
    path = str(tmp_path / LIVE_SERIES_FILE)
    writer = LiveSeriesWriter(path)
    writer.append("loss", 0, 1.0)
    writer.close()
    with open(path, "ab") as fh:
        fh.write(b"\x00garbage\n")
        fh.write(b'["loss",[1],[2.0]]\n')
    assert read_live_series_file(path)["loss"] == ([0, 1], [1.0, 2.0])
    assert "line 3 is not a chunk of points" in caplog.text and path in caplog.text


def test_steps_reach_the_file_within_the_flush_interval_and_are_batched(tmp_path):
    path = str(tmp_path / LIVE_SERIES_FILE)
    writer = LiveSeriesWriter(path)
    size_after_header = os.path.getsize(path)
    writer.append("loss", 0, 1.0)
    assert os.path.getsize(path) == size_after_header  # buffered: no write per step
    end = time.monotonic() + 10 * FLUSH_INTERVAL_S + 5
    while read_live_series_file(path) == {} and time.monotonic() < end:
        time.sleep(0.01)
    assert read_live_series_file(path)["loss"] == ([0], [1.0])
    writer.discard()
    assert not os.path.exists(path)


def test_concurrent_threads_of_one_run_keep_every_step(tmp_path):
    path = str(tmp_path / LIVE_SERIES_FILE)
    writer = LiveSeriesWriter(path)

    def worker(name: str) -> None:
        for i in range(2000):
            writer.append(name, i, float(i))

    threads = [threading.Thread(target=worker, args=(f"s{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    found = read_live_series_file(path)
    assert sorted(found) == ["s0", "s1", "s2", "s3"]
    assert all(found[n] == (list(range(2000)), [float(i) for i in range(2000)]) for n in found)


def test_a_read_only_store_reads_live_series_but_cannot_open_them(tmp_path):
    store = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="e:1"))
    writer = store.open_live_series("r1", attempt=1)
    writer.append("loss", 0, 2.0)
    writer.close()
    ro = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="e:1", read_only=True))
    assert ro.read_live_series("r1") == {"loss": ([0], [2.0])}
    with pytest.raises(metalab.ReadOnlyStoreError):
        ro.open_live_series("r1")


def test_a_new_attempt_removes_the_live_file_a_killed_one_left(tmp_path):
    exp = metalab.Experiment(name="live", version="1", context={},
                             operation=live_ops.fails_on_two,
                             params=metalab.grid(x=[2]), seeds=metalab.seeds(0))
    run(exp, store=tmp_path, progress=False)  # attempt 1: failed
    (run_id,) = [s.run_id for s in exp.iter_specs()]
    store = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="live:1"))
    leftover = store.open_live_series(run_id, attempt=1)  # as a killed attempt leaves it
    leftover.append("loss", 0, 1.0)
    leftover.close()
    assert store.read_live_series(run_id, attempt=2) == {}  # never shown as attempt 2's
    run(exp, store=tmp_path, progress=False)  # attempt 2 captures no series
    assert store.get_run_record(run_id).attempt == 2
    assert not os.path.exists(store.live_series_path(run_id))


_WRITER_SCRIPT = """
import sys
from metalab.store import LiveSeriesWriter
writer = LiveSeriesWriter(sys.argv[1], attempt=1)
print("ready", flush=True)
i = 0
while True:
    writer.append("loss", i, float(i))
    writer.append("other", i, -float(i))
    if i % 50 == 0:
        writer.flush()
    i += 1
"""


def test_a_writer_killed_with_sigkill_leaves_a_file_that_reads_without_error(tmp_path):
    import signal
    import subprocess
    import sys

    path = str(tmp_path / LIVE_SERIES_FILE)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, path], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        end = time.monotonic() + WAIT_S
        while os.path.getsize(path) < 200_000 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    found = read_live_series_file(path, attempt=1)
    steps, values = found["loss"]
    assert len(steps) > 1000
    assert steps == list(range(len(steps))) and values == [float(s) for s in steps]
    other_steps, other_values = found["other"]
    assert other_values == [-float(s) for s in other_steps]
