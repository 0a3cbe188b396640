"""Execution benchmarks (not a test): per-run overhead, SLURM submission, SLURM throughput.

Usage: .venv/bin/python bench/bench_execution.py [--runs 500] [--no-slurm]
SLURM parts need a cluster (scripts/slurm_up.sh; export SLURM_CONF).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench_ops import noop
from _common import machine

import metalab
from metalab import Experiment, grid, seeds
from metalab._internal._time import utcnow
from metalab.model import Provenance, RunRecord, Status
from metalab.store import FileStore


def make(n: int, name: str = "bench") -> Experiment:
    return Experiment(name=name, version="1", context={}, operation=noop, params=grid(x=list(range(n))),
                      seeds=seeds(0, 1))


def raw_baseline(n: int, root: str) -> float:
    """Write a running + a final record per run directly (what any executor must at least do)."""
    exp = make(n)
    store = FileStore(root, exp.experiment_id)
    specs = list(exp.iter_specs())
    t0 = time.perf_counter()
    for spec in specs:
        now = utcnow()
        rec = RunRecord(run_id=spec.run_id, experiment_id=spec.experiment_id, status=Status.RUNNING,
                        context_fingerprint=spec.context_fingerprint, params_fingerprint=spec.params_fingerprint,
                        seed_fingerprint=spec.seed_fingerprint, params=dict(spec.params),
                        seed=spec.seed.to_dict(), started_at=now, heartbeat_at=now,
                        provenance=Provenance.current(executor="raw"))
        store.put_run_record(rec)
        store.put_run_record(rec.replace(status=Status.SUCCESS, finished_at=utcnow(), duration_ms=0.0))
    return time.perf_counter() - t0


def executor_time(n: int, root: str, executor) -> float:
    exp = make(n)
    t0 = time.perf_counter()
    handle = metalab.run(exp, store=root, executor=executor)
    handle.wait()
    assert handle.status.success == n, handle.status
    return time.perf_counter() - t0


def slurm_dry_run(n: int, root: str) -> dict:
    exp = Experiment(name="big", version="1", context={}, operation=noop, params=grid(x=list(range(n // 10))),
                     seeds=seeds(0, 10))
    t0 = time.perf_counter()
    handle = metalab.run(exp, store=root, executor=metalab.SlurmExecutor(chunk_size=50, max_array_size=1000,
                                                                         dry_run=True))
    elapsed = time.perf_counter() - t0
    sub_dir = Path(handle.submission_dir)
    sub_bytes = sum(p.stat().st_size for p in sub_dir.rglob("*") if p.is_file())
    manifests = Path(handle.store.get_working_directory(), "experiments")
    man_bytes = sum(p.stat().st_size for p in manifests.iterdir())
    return {"runs": n, "client_s": round(elapsed, 2), "submission_bytes": sub_bytes,
            "experiment_manifest_bytes": man_bytes, "arrays": len(handle.submission["arrays"])}


def slurm_real(n: int, chunk: int, root: str) -> dict:
    exp = make(n, name="thr")
    t0 = time.perf_counter()
    handle = metalab.run(exp, store=root, executor=metalab.SlurmExecutor(chunk_size=chunk, poll_interval=0.5))
    submit = time.perf_counter() - t0
    handle.wait()
    total = time.perf_counter() - t0
    st = handle.status
    assert st.success == n, st
    return {"runs": n, "chunk_size": chunk, "tasks": handle.submission["n_tasks"], "submit_s": round(submit, 2),
            "wall_s": round(total, 1), "runs_per_s": round(n / total, 1), "success": st.success}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--no-slurm", action="store_true")
    args = ap.parse_args()
    out: dict = {"machine": machine()}
    tmp = tempfile.mkdtemp(prefix="metalab-bench-exec-")
    try:
        n = args.runs
        base = raw_baseline(n, os.path.join(tmp, "raw"))
        thread = executor_time(n, os.path.join(tmp, "thread"), metalab.ThreadExecutor(4))
        serial = executor_time(n, os.path.join(tmp, "serial"), metalab.SerialExecutor())
        proc = executor_time(n, os.path.join(tmp, "process"), metalab.ProcessExecutor(2))
        out["overhead_ms_per_run"] = {
            "raw_records": round(base / n * 1000, 3),
            "serial": round(serial / n * 1000, 3),
            "thread4": round(thread / n * 1000, 3),
            "process2": round(proc / n * 1000, 3),
        }
        out["slurm_dry_run_100k"] = slurm_dry_run(100_000, os.path.join(tmp, "dry"))
        if not args.no_slurm and os.environ.get("SLURM_CONF"):
            out["slurm_real_small"] = slurm_real(20, 1, os.path.join(tmp, "small"))
            out["slurm_2000_chunked"] = slurm_real(2000, 100, os.path.join(tmp, "thr"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
