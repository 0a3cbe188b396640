"""No-op sweep benchmark against the physical baseline, measured in the same run.

A sweep of N no-op runs with the default executor (``SerialExecutor``) on a
FileStore (``metalab.run`` until it returns: bulk pass over stored records,
manifest, and per run: claim, ``running`` record, attempt log, operation,
final record, claim release) against the least a durable sweep must do: one
atomic durable write of one record per run (temp file in the same folder,
``write``, ``fsync``, ``rename``), with the bytes serialised beforehand.
Target: <= 1.5x the baseline's time.

The disk is shared and noisy: rounds alternate baseline and sweep, each in a
fresh folder on the same disk; the ratio is the median of the per-round
ratios.  Each round also counts fsyncs and the group commit's syncfs calls
(a serial sweep makes its final records durable in groups: one syncfs per group).

Usage: python bench/bench_sweep.py [--runs 3000] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_ops import noop
from _common import machine

import metalab
from metalab import Experiment, grid, seeds
from metalab._internal._json import dumps
from metalab._internal._time import utcnow
from metalab.model import Provenance, RunRecord, Status

try:
    from metalab.store import _group_commit
except ImportError:  # code from before the group commit (the A/B against older commits)
    _group_commit = None  # type: ignore[assignment]


def make(n: int) -> Experiment:
    return Experiment(name="sweep", version="1", context={}, operation=noop,
                      params=grid(x=list(range(n))), seeds=seeds(0, 1))


def final_payloads(exp: Experiment) -> list[tuple[str, bytes]]:
    """(run id, bytes) of a final record per run, shaped like the ones a sweep writes."""
    out = []
    prov = Provenance.current(executor="serial", worker_id="serial-0")
    for spec in exp.iter_specs():
        now = utcnow()
        rec = RunRecord(run_id=spec.run_id, experiment_id=spec.experiment_id, status=Status.SUCCESS,
                        context_fingerprint=spec.context_fingerprint,
                        params_fingerprint=spec.params_fingerprint,
                        seed_fingerprint=spec.seed_fingerprint, params=dict(spec.params),
                        seed=spec.seed.to_dict(), started_at=now, heartbeat_at=now, finished_at=now,
                        duration_ms=0.1, provenance=prov)
        out.append((spec.run_id, dumps(rec.to_dict())))
    return out


def raw_round(payloads: list[tuple[str, bytes]], folder: Path, dir_fsync: bool = False) -> float:
    """Temp file + write + fsync + rename of one record per run (+ folder fsync if asked)."""
    folder.mkdir(parents=True)
    d = str(folder)
    t0 = time.perf_counter()
    for run_id, data in payloads:
        tmp = os.path.join(d, f".tmp-{run_id}.json")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(d, f"{run_id}.json"))
        if dir_fsync:
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return time.perf_counter() - t0


class FsyncCounter:
    """Counts os.fsync calls and the group commit's syncfs calls (the sweep runs in this process)."""

    def __init__(self) -> None:
        self.calls = 0
        self.syncfs = 0
        self._orig = os.fsync
        self._orig_syncfs = _group_commit._syncfs if _group_commit is not None else None

    def __enter__(self) -> FsyncCounter:
        def counting(fd: int) -> None:
            self.calls += 1
            self._orig(fd)

        def counting_syncfs(folder: str) -> None:
            self.syncfs += 1
            assert self._orig_syncfs is not None
            self._orig_syncfs(folder)

        os.fsync = counting  # type: ignore[assignment]
        if _group_commit is not None:
            _group_commit._syncfs = counting_syncfs  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._orig  # type: ignore[assignment]
        if _group_commit is not None:
            _group_commit._syncfs = self._orig_syncfs  # type: ignore[assignment]


def sweep_round(exp: Experiment, folder: Path) -> tuple[float, int, int]:
    """(seconds, fsync calls, syncfs calls) of one sweep."""
    with FsyncCounter() as fsyncs:
        t0 = time.perf_counter()
        handle = metalab.run(exp, store=str(folder))
        elapsed = time.perf_counter() - t0
    st = handle.status
    if st.success != st.total:
        raise SystemExit(f"the sweep did not succeed: {st}")
    return elapsed, fsyncs.calls, fsyncs.syncfs


class PhaseTimer:
    """Wall time spent in the main steps of each run (``--breakdown``; wrappers cost ~1 us each)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, attr: str, label: Callable[..., str]) -> None:
        orig = getattr(owner, attr)
        totals = self.totals

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                key = label(*args, **kwargs)
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, orig))

    def __enter__(self) -> PhaseTimer:
        from metalab.definition import Experiment as Exp
        from metalab.execution import _capture, _claims
        from metalab.store import FileStore

        def specs(exp: Any, *a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = list(orig_specs(exp))
            self.totals["run specs (ids, fingerprints)"] = time.perf_counter() - t0
            return iter(out)

        orig_specs = Exp.iter_specs
        Exp.iter_specs = specs  # type: ignore[method-assign]
        self._undo.append((Exp, "iter_specs", orig_specs))
        self._wrap(FileStore, "try_claim", lambda *a, **k: "claim")
        self._wrap(FileStore, "release_claim", lambda *a, **k: "claim release")
        self._wrap(FileStore, "get_run_record", lambda *a, **k: "record read before the run")
        self._wrap(FileStore, "put_run_record", lambda *a, durable=True, **k:
                   "final record (fsync)" if durable else "running record (no fsync)")
        if hasattr(FileStore, "stage_run_record"):
            self._wrap(FileStore, "stage_run_record", lambda *a, **k: "final record staged (temp file)")
            self._wrap(FileStore, "commit_staged", lambda *a, **k:
                       "group commits (syncfs, renames; committer thread, overlaps the runs)")
        self._wrap(_claims.Heartbeat, "start", lambda *a, **k: "heartbeat thread start/stop")
        self._wrap(_claims.Heartbeat, "stop", lambda *a, **k: "heartbeat thread start/stop")
        for attr in ("__init__", "write", "close"):
            self._wrap(_capture.RunLog, attr, lambda *a, **k: "attempt log")
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)


def breakdown(exp: Experiment, folder: Path, n: int, raw_s: float) -> dict[str, float]:
    """ms per run spent in each step of a sweep (one extra round, not counted in the ratio)."""
    with PhaseTimer() as timer:
        total, _, _ = sweep_round(exp, folder)
    out = {k: v / n * 1000 for k, v in sorted(timer.totals.items(), key=lambda kv: -kv[1])}
    out["everything else (runner, executor, records, operation call)"] = (
        total - sum(timer.totals.values())) / n * 1000
    out["total"] = total / n * 1000
    out["raw baseline of the same round"] = raw_s / n * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: temp)")
    ap.add_argument("--breakdown", action="store_true",
                    help="one more round with the time of each step of a run measured")
    args = ap.parse_args()
    n = args.runs
    exp = make(n)
    payloads = final_payloads(exp)
    tmp = Path(tempfile.mkdtemp(prefix="metalab-bench-sweep-", dir=args.dir))
    try:
        # warm imports and the first-run costs (platform probe, log routing) untimed
        metalab.run(make(2), store=str(tmp / "warm"))
        t_raw, t_sweep, ratios, fsyncs, syncfs = [], [], [], [], []
        for _ in range(args.rounds):
            os.sync()
            a = raw_round(payloads, tmp / f"raw-{secrets.token_hex(4)}")
            os.sync()
            b, f, g = sweep_round(exp, tmp / f"sweep-{secrets.token_hex(4)}")
            t_raw.append(a)
            t_sweep.append(b)
            fsyncs.append(f)
            syncfs.append(g)
            ratios.append(b / a)
        result = {
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": n,
            "rounds": args.rounds,
            "bytes_per_record": round(sum(len(p) for _, p in payloads) / n),
            "raw_s": t_raw,
            "sweep_s": t_sweep,
            "ratios": ratios,
            "ratio_median": statistics.median(ratios),
            "fsyncs_per_run": [f / n for f in fsyncs],
            "syncfs_per_run": [g / n for g in syncfs],
        }
        print(f"no-op sweep of {n} runs, SerialExecutor, FileStore ({result['bytes_per_record']} B/record)")
        for i, (a, b, f, g) in enumerate(zip(t_raw, t_sweep, fsyncs, syncfs, strict=True)):
            print(f"  round {i + 1}: raw {a:7.3f} s ({a / n * 1000:.3f} ms/run)   sweep {b:7.3f} s "
                  f"({b / n * 1000:.3f} ms/run)   ratio {b / a:.2f}x   fsyncs/run {f / n:.2f}"
                  f"   syncfs/run {g / n:.3f}")
        print(f"  ratio per round: median {result['ratio_median']:.2f}x, range {min(ratios):.2f}-"
              f"{max(ratios):.2f}x (target <= 1.5x)")
        if args.breakdown:
            os.sync()
            a = raw_round(payloads, tmp / f"raw-{secrets.token_hex(4)}")
            os.sync()
            parts = breakdown(exp, tmp / f"sweep-{secrets.token_hex(4)}", n, a)
            os.sync()
            parts["raw baseline with a folder fsync after each rename"] = raw_round(
                payloads, tmp / f"raw-{secrets.token_hex(4)}", dir_fsync=True) / n * 1000
            result["breakdown_ms_per_run"] = parts
            print("  breakdown of one more round (ms per run):")
            for k, v in parts.items():
                print(f"    {v:7.3f}  {k}")
        print("machine:", json.dumps(result["machine"]))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
