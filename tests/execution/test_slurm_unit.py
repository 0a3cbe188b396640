"""SLURM pieces that need no cluster: config validation, the sbatch script, dry-run submissions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import exec_ops
import pytest

import metalab
from metalab import Experiment, grid, seeds
from metalab.execution import SlurmConfig, SlurmExecutor, render_sbatch_script
from metalab.execution._slurm import (
    encode_ranges,
    position_to_index,
    range_starts,
    sanitize_store_config,
)

GOLDEN = """\
#!/bin/bash
#SBATCH --job-name=metalab-train
#SBATCH --output=/shared/exp/train_1/.slurm/x/logs/%A_%a.out
#SBATCH --chdir=/home/me/proj
#SBATCH --partition=gpu
#SBATCH --time=02:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --gres=gpu:1
#SBATCH --account=lab
#SBATCH --exclusive

set -e
module load cuda/12.1
source /opt/venv/bin/activate
export PYTHONUNBUFFERED=1
exec /opt/venv/bin/python -m metalab.execution._slurm_task /shared/exp/train_1/.slurm/x/submission.json "${1:-0}"
"""

GOLDEN_DEFAULTS = """\
#!/bin/bash
#SBATCH --job-name=j
#SBATCH --output=/s/logs/%A_%a.out
#SBATCH --chdir=/w
#SBATCH --time=01:00:00
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1

set -e
export PYTHONUNBUFFERED=1
exec /usr/bin/python3 -m metalab.execution._slurm_task '/s/sub mission.json' "${1:-0}"
"""


def test_sbatch_script_golden_text():
    cfg = SlurmConfig(
        partition="gpu", time="02:00:00", cpus=4, memory="8G", gpus=1, modules=["cuda/12.1"],
        setup="source /opt/venv/bin/activate", extra_sbatch={"account": "lab", "exclusive": None},
    )
    text = render_sbatch_script(
        cfg, job_name="metalab-train", python="/opt/venv/bin/python",
        submission="/shared/exp/train_1/.slurm/x/submission.json",
        log_dir="/shared/exp/train_1/.slurm/x/logs", workdir="/home/me/proj",
    )
    assert text == GOLDEN
    defaults = render_sbatch_script(
        SlurmConfig(), job_name="j", python="/usr/bin/python3", submission="/s/sub mission.json",
        log_dir="/s/logs", workdir="/w",
    )
    assert defaults == GOLDEN_DEFAULTS


def test_unknown_options_are_refused_with_the_valid_ones():
    with pytest.raises(metalab.ValidationError) as info:
        SlurmConfig(partiton="gpu")
    msg = str(info.value)
    assert "partiton" in msg
    for name in ("partition", "time", "cpus", "memory", "gpus", "max_concurrent", "chunk_size",
                 "max_array_size", "modules", "setup", "extra_sbatch"):
        assert name in msg
    with pytest.raises(metalab.ValidationError, match="valid options"):
        SlurmExecutor(chunksize=4)
    with pytest.raises(metalab.ValidationError, match="valid options"):
        SlurmConfig().replace(gpu=1)
    assert SlurmExecutor(chunk_size=4).config.chunk_size == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cpus": 0}, "cpus"),
        ({"chunk_size": True}, "chunk_size"),
        ({"time": "forever"}, "time"),
        ({"memory": "lots"}, "memory"),
        ({"extra_sbatch": ["--array=0-3"]}, "must not set"),
        ({"extra_sbatch": {"output": "x"}}, "must not set"),
        ({"gpus": -1}, "gpus"),
        ({"poll_interval": 0}, "poll_interval"),
    ],
)
def test_invalid_values_are_refused(kwargs, match):
    with pytest.raises(metalab.ValidationError, match=match):
        SlurmConfig(**kwargs)


def test_ranges_roundtrip():
    indices = [0, 1, 2, 5, 6, 9, 20]
    ranges = encode_ranges(indices)
    assert ranges == [[0, 3], [5, 7], [9, 10], [20, 21]]
    starts = range_starts(ranges)
    assert [position_to_index(ranges, starts, p) for p in range(len(indices))] == indices


def test_store_config_loses_its_password():
    cfg = {"_type": "postgresql", "connection_string": "postgresql://bob:s3cret@db:5432/lab?sslmode=require",
           "password": "x", "file_root": "/shared"}
    clean = sanitize_store_config(cfg)
    assert "s3cret" not in json.dumps(clean) and "password" not in clean
    assert clean["connection_string"] == "postgresql://bob@db:5432/lab?sslmode=require"
    kv = sanitize_store_config({"dsn": "host=db user=bob password=s3cret dbname=lab"})
    assert "s3cret" not in kv["dsn"] and "dbname=lab" in kv["dsn"]


def test_dry_run_of_a_100k_sweep_is_fast_and_small(tmp_path):
    exp = Experiment(name="big", version="1", context={"root": str(tmp_path)}, operation=exec_ops.basic,
                     params=grid(x=list(range(10_000))), seeds=seeds(0, 10))
    t0 = time.perf_counter()
    handle = metalab.run(exp, store=tmp_path, executor=SlurmExecutor(chunk_size=10, max_array_size=5000,
                                                                     dry_run=True))
    elapsed = time.perf_counter() - t0
    sub = handle.submission
    assert sub["n_pending"] == 100_000 and sub["n_tasks"] == 10_000
    assert [a["count"] for a in sub["arrays"]] == [5000, 5000]
    folder = Path(handle.submission_dir)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 1_000_000  # the submission itself is tiny: ranges, not run lists
    manifest = handle.store.get_experiment_manifest("big:1")
    assert manifest["submission"]["kind"] == "slurm"
    assert elapsed < 30  # generous for CI; the benchmark records the real figure
    assert handle.wait(timeout=1)


def test_postgres_password_never_reaches_the_submission(tmp_path, monkeypatch):
    from metalab.store import PostgresStoreConfig

    cfg = PostgresStoreConfig(connection_string="postgresql://bob:s3cret@127.0.0.1:1/lab",
                              file_root=str(tmp_path))
    exp = Experiment(name="pw", version="1", context={}, operation=exec_ops.failing,
                     params=grid(x=[1, 2]), seeds=seeds(0, 1))
    handle = metalab.run(exp, store=cfg, executor=SlurmExecutor(max_array_size=10, dry_run=True))
    for path in Path(handle.submission_dir).rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    assert handle.submission["store"]["connection_string"] == "postgresql://bob@127.0.0.1:1/lab"


def test_slurm_executor_is_only_for_whole_experiments(tmp_path):
    with pytest.raises(metalab.ExecutionError, match=r"metalab\.run"):
        SlurmExecutor().submit(None)  # type: ignore[arg-type]
    assert os.environ.get("METALAB_NEVER_SET") is None


def test_a_handle_waits_for_a_run_another_launch_is_executing(tmp_path, monkeypatch):
    """This submission's jobs left the queue without running ``r1`` (another
    launch's worker holds it, heart-beating): the run is counted ``elsewhere``, not lost,
    and ends with that worker's final record.  A run last written by one of this
    submission's own tasks that left the queue is lost at once.
    (The queue is faked here; tests/slurm runs two real launches.)"""
    from datetime import UTC, datetime

    from metalab.execution._slurm import SlurmRunHandle
    from metalab.model import Provenance, RunRecord, Status
    from metalab.store import FileStore, FileStoreConfig

    store = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="sl:1"))
    now = datetime.now(UTC)

    def running(rid: str, worker: str) -> None:
        store.put_run_record(RunRecord(run_id=rid, experiment_id="sl:1", status=Status.RUNNING,
                                       started_at=now, heartbeat_at=now,
                                       provenance=Provenance(worker_id=worker)))

    running("r1", "slurm-900_0@node2")  # another launch's array job
    running("r2", "slurm-111_1@node1")  # a task of this submission, gone from the queue
    handle = SlurmRunHandle(store, {"experiment_id": "sl:1", "total_runs": 2,
                                    "submission_id": "s", "arrays": [{"job_id": "111"}]},
                            ["r1", "r2"])
    monkeypatch.setattr(handle, "_squeue", lambda: {"pending": 0, "running": 0})
    for _ in range(3):
        status = handle.poll()
    # (counted apart from this submission's own running runs)
    assert (status.elsewhere, status.running, status.lost, handle.done) == (1, 0, 1, False)
    store.put_run_record(store.get_run_record("r1").replace(  # type: ignore[union-attr]
        status=Status.SUCCESS, finished_at=datetime.now(UTC)))
    status = handle.poll()
    assert (status.success, status.lost, handle.done) == (1, 1, True)

    # cancelled: a run another launch is executing is not waited for
    running("r3", "slurm-900_1@node2")
    cancelled = SlurmRunHandle(store, {"experiment_id": "sl:1", "total_runs": 1,
                                       "submission_id": "s2", "arrays": [{"job_id": "112"}]},
                               ["r3"])
    monkeypatch.setattr(cancelled, "_squeue", lambda: {"pending": 0, "running": 0})
    monkeypatch.setattr("metalab.execution._slurm_queue.run_cmd", lambda *a, **k: type(
        "P", (), {"returncode": 0, "stderr": ""})())
    cancelled.cancel()
    for _ in range(3):
        status = cancelled.poll()
    assert (status.cancelled, status.running, cancelled.done) == (1, 0, True)


def test_result_holds_only_the_runs_of_the_submission(tmp_path):
    def exp(xs):
        return Experiment(name="sub", version="1", context={"root": str(tmp_path)},
                          operation=exec_ops.basic, params=grid(x=list(xs)), seeds=seeds(0, 1))

    metalab.run(exp([1, 2, 3]), store=tmp_path).result()
    handle = metalab.run(exp([3, 4]), store=tmp_path, executor=SlurmExecutor(dry_run=True))
    assert handle.wait(timeout=1)
    # x=3 succeeded before (skipped here), x=4 was only queued (dry run): runs of the
    # first grid (x=1, 2) stay in the store but are not this submission's result
    assert [r.params["x"] for r in handle.result()] == [3]
    assert len(metalab.load_results(tmp_path)) == 3
