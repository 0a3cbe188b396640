"""PostgreSQL stopped mid-sweep and restarted (fault scoreboard).

A sweep of short runs writes to a PostgresStore whose server is stopped
(``pg_ctl stop -m fast``) partway and started again while the sweep goes on.
Meanwhile a second experiment is written in ``deferred`` mode, so its changes
wait in the journal.  The test then checks, from the raw files and from SQL
(never through the store's own readers):

* every run of the sweep is ``success`` in its file (``lost`` otherwise);
* the index reaches the files by catch-up alone, within a bounded wait, with
  no ``reconcile()``: run ids, statuses, metrics and record documents equal,
  for both experiments (``corrupt`` counts differences, ``lost`` runs missing);
* the handle and ``result()`` report what the files hold (``misreported``);
* the sweep takes at most 1.3x the time of the same sweep on a FileStore.
  The FileStore sweep runs before and after (their mean is the printed
  baseline); on a shared 2-core machine two FileStore sweeps of worker
  processes differ by up to a quarter, so the limit is 1.3x the slower of
  them, and at least the mean plus 2 s.

With the thread executor the sweep's own flusher retries the catch-up until the
server answers; with the process executor the workers are gone when the sweep
ends, and the launcher's next store operation (``result()``) starts it.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from metalab.definition import Experiment, grid, operation, seeds
from metalab.execution import ProcessExecutor, ThreadExecutor, run
from metalab.services import ServerInfo, start_server, stop_server
from metalab.store import PostgresStoreConfig
from metalab.testing import make_record

RUNS = 200
OTHER_RUNS = 20
#: workers per executor (processes: one per core of a small CI machine)
WORKERS = {"thread": 4, "process": 2}
#: seconds the index may take to catch up once the sweep has ended
CATCH_UP_BOUND_S = 30.0


@operation
def short_run(params, capture):
    time.sleep(0.03)
    capture.metric("y", params["x"] * 2)
    capture.metric("half", params["x"] / 2)
    return {"z": params["x"] + 0.5}


def _experiment(name: str) -> Experiment:
    return Experiment(name=name, version="1", context={}, operation=short_run,
                      params=grid(x=list(range(RUNS))), seeds=seeds(0, 1))


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[tuple[ServerInfo, str]]:
    """A server of this module alone: the tests stop and restart it."""
    folder = tempfile.mkdtemp(prefix="metalab-pgfault-")
    info = start_server(folder, fast=True)
    try:
        yield info, folder
    finally:
        stop_server(folder, mode="immediate", remove=True)


def _executor(kind: str) -> Any:
    if kind == "thread":
        return ThreadExecutor(max_workers=WORKERS[kind])
    return ProcessExecutor(max_workers=WORKERS[kind])


def _file_runs(root: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Every run record under ``root`` read with ``json``; and the files that do not parse."""
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    bad: list[str] = []
    for path in sorted(root.glob("*/runs/*.json")):
        try:
            doc = json.loads(path.read_bytes())
            docs[(doc["experiment_id"], doc["run_id"])] = doc
        except (ValueError, KeyError, TypeError):
            bad.append(str(path))
    return docs, bad


def _index_runs(url: str, schema: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every run of the index: its query row and its record document, from SQL."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(sql.SQL(
            "SELECT r.experiment_id, r.run_id, r.status, r.metrics, m.record "
            "FROM {s}.runs r FULL JOIN {s}.run_records m USING (experiment_id, run_id)"
        ).format(s=sql.Identifier(schema))).fetchall()
    return {
        (e, r): {"status": status, "metrics": metrics,
                 "record": json.loads(record) if record is not None else None}
        for e, r, status, metrics, record in rows
    }


def _differences(files: dict[tuple[str, str], dict[str, Any]],
                 index: dict[tuple[str, str], dict[str, Any]]) -> tuple[int, int, int]:
    """``(missing, different, extra)`` index rows compared with the files."""
    missing = sum(1 for k in files if k not in index)
    extra = sum(1 for k in index if k not in files)
    different = sum(
        1 for k, doc in files.items() if k in index and index[k] != {
            "status": doc["status"], "metrics": doc["metrics"], "record": doc}
    )
    return missing, different, extra


def _timed_sweep(store: Any, name: str, kind: str,
                 on_event: Any = None) -> tuple[Any, float]:
    t = time.perf_counter()
    handle = run(_experiment(name), store=store, executor=_executor(kind), on_event=on_event)
    assert handle.wait(timeout=300)
    return handle, time.perf_counter() - t


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "back"), [("thread", "mid-sweep"), ("process", "mid-sweep"),
                                            ("thread", "after the sweep")])
def test_postgres_stopped_mid_sweep_and_restarted(restartable_server, tmp_path: Path,
                                                  scoreboard: list[str], kind: str,
                                                  back: str) -> None:
    info, folder = restartable_server
    start_server(folder, fast=True)  # (running already unless an earlier test failed)
    url = info.url
    schema = f"fault_{secrets.token_hex(4)}"
    root = tmp_path / "pg"
    cfg = PostgresStoreConfig(connection_string=url, file_root=str(root), schema=schema,
                              connect_timeout=5)
    with cfg.connect() as first:
        first.index.ping()  # the index tables exist before the sweep

    # the FileStore-only sweep of the same runs (after a warm-up of the executor)
    _timed_sweep(tmp_path / "warm", "warm", kind)
    _h, file_s = _timed_sweep(tmp_path / "fs", "sweep", kind)

    finished = 0
    marks: dict[str, float] = {}
    sweep_done = threading.Event()

    def count(event: Any) -> None:
        nonlocal finished
        if event.kind.name == "RUN_FINISHED":
            finished += 1

    def outage() -> None:
        """Stop the server at a quarter of the sweep; start it at half, or after the sweep."""
        t0 = time.perf_counter()
        while finished < RUNS // 4 and not sweep_done.is_set():
            time.sleep(0.005)
        stop_server(folder, mode="fast")
        marks["stopped"] = time.perf_counter() - t0
        # another experiment's changes wait in the journal meanwhile
        deferred = PostgresStoreConfig(connection_string=url, file_root=str(root), schema=schema,
                                       experiment_id="other:1", index_mode="deferred").connect()
        for i in range(OTHER_RUNS):
            deferred.put_run_record(make_record(f"o{i:03d}", "other:1", params={"i": i},
                                                metrics={"m": i / 4}))
        deferred.close()
        if back == "mid-sweep":
            while finished < RUNS // 2 and not sweep_done.is_set():
                time.sleep(0.005)
        else:
            sweep_done.wait()
        start_server(folder, fast=True)
        marks["back_at"] = time.perf_counter()
        marks["restarted"] = marks["back_at"] - t0

    controller = threading.Thread(target=outage, daemon=True)
    controller.start()
    try:
        handle, pg_s = _timed_sweep(cfg, "sweep", kind, on_event=count)
    finally:
        sweep_done.set()
        controller.join(timeout=120)
    assert not controller.is_alive()

    lost = corrupt = misreported = 0
    problems: list[str] = []
    files, bad = _file_runs(root)
    corrupt += len(bad)
    sweep_ok = {k for k, d in files.items() if k[0] == "sweep:1" and d["status"] == "success"}
    lost += RUNS - len(sweep_ok)
    if kind == "process":
        result = handle.result(timeout=60)  # the next store operation starts the catch-up
    t = time.perf_counter()
    caught_up = "never"
    while True:  # catch-up alone: the flusher's retry, or what result() started
        missing, different, extra = _differences(files, _index_runs(url, schema))
        if (missing, different, extra) == (0, 0, 0):
            caught_up = f"{time.perf_counter() - marks['back_at']:.2f} s"
            break
        if time.perf_counter() - t > CATCH_UP_BOUND_S:
            problems.append(f"after {CATCH_UP_BOUND_S:.0f} s the index misses {missing} runs, "
                            f"{different} differ from their files, {extra} have no file")
            lost += missing
            corrupt += different
            misreported += extra
            break
        time.sleep(0.1)
    if kind == "thread":
        result = handle.result(timeout=60)
    st = handle.status
    if (st.success, st.done, st.total) != (RUNS, RUNS, RUNS):
        misreported += 1
        problems.append(f"handle status {st}")
    if sorted(result.run_ids) != sorted(r for e, r in sweep_ok):
        misreported += 1
        problems.append(f"result() holds {len(result.run_ids)} runs, the files {len(sweep_ok)}")
    _h, file_again_s = _timed_sweep(tmp_path / "fs2", "sweep", kind)
    base_s = (file_s + file_again_s) / 2
    tried = RUNS + OTHER_RUNS
    limit_s = max(1.3 * max(file_s, file_again_s), base_s + 2.0)
    line = (f"postgres-restart ({kind}, back {back}): tried {tried} / lost {lost} / "
            f"corrupt {corrupt} / misreported {misreported}; sweep {pg_s:.2f} s vs FileStore "
            f"{base_s:.2f} s ({file_s:.2f}, {file_again_s:.2f}) = {pg_s / base_s:.2f}x; server "
            f"stopped at {marks.get('stopped', float('nan')):.2f} s, back at "
            f"{marks.get('restarted', float('nan')):.2f} s; index equal to the files "
            f"{caught_up} after the restart")
    print(line)
    scoreboard.append(line)
    assert (lost, corrupt, misreported) == (0, 0, 0), "\n".join(problems)
    assert "stopped" in marks and "restarted" in marks
    assert marks["stopped"] < pg_s, "the server was stopped only after the sweep"
    if back == "mid-sweep":
        assert marks["restarted"] < pg_s, "the server came back only after the sweep"
    assert pg_s <= limit_s, line
