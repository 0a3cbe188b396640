"""Cost per step of a stepped metric (``capture.metric(name, value, step=i)``).

Timed in the same run, on the same disk, N steps each (best of --repeat):

(a) ``capture.metric`` on a FileStore: the point is kept for the final series
    document and appended to the live series file (buffered, see
    ``metalab.store._series``);
(b) ``capture.metric`` with live series off: the in-memory cost alone (what a
    step cost before live series);
(c) raw unbuffered append: ``os.write`` of one JSON line per step on an
    ``O_APPEND`` file (one system call per step: the naive live file);
(d) raw buffered append: the points kept in two lists and written as one
    orjson line every 512 steps (the least the live file's format costs: no
    validation, no lock, no in-memory copy for the final document).

Usage: python bench/bench_series.py [--steps 200000] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import best_of, machine

from metalab.execution._capture import Capture, RunLog
from metalab.store import FileStoreConfig
from metalab.store._series import FLUSH_EVERY_STEPS

EXP = "bench:1"


def _capture(root: str, run_id: str, live: bool) -> Capture:
    store = FileStoreConfig(root=root, experiment_id=EXP).connect()
    cap = Capture(store, run_id, RunLog(store, run_id, header="bench"), experiment_id=EXP)
    cap._live_off = not live
    return cap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "series.json"))
    args = ap.parse_args()
    n = args.steps
    root = tempfile.mkdtemp(prefix="metalab-bench-series-")
    values = [1.0 / (i + 1) for i in range(n)]
    counter = iter(range(10**9))
    try:
        def with_capture(live: bool) -> None:
            cap = _capture(root, f"r{next(counter)}", live)
            metric = cap.metric
            for i in range(n):
                metric("loss", values[i], step=i)
            cap._finish()

        def raw_write(buffered: bool) -> None:
            path = os.path.join(root, f"raw{next(counter)}.jsonl")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            steps: list[int] = []
            vals: list[float] = []
            for i in range(n):
                if buffered:
                    steps.append(i)
                    vals.append(values[i])
                    if len(steps) >= FLUSH_EVERY_STEPS:
                        os.write(fd, orjson.dumps(["loss", steps, vals]) + b"\n")
                        steps, vals = [], []
                else:
                    os.write(fd, f'["loss",[{i}],[{values[i]!r}]]\n'.encode())
            if steps:
                os.write(fd, orjson.dumps(["loss", steps, vals]) + b"\n")
            os.close(fd)

        timings = {
            "capture_live": best_of(lambda: with_capture(True), args.repeat),
            "capture_memory_only": best_of(lambda: with_capture(False), args.repeat),
            "raw_unbuffered_write": best_of(lambda: raw_write(False), args.repeat),
            "raw_buffered_write": best_of(lambda: raw_write(True), args.repeat),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_step = {k: v / n * 1e6 for k, v in timings.items()}
    for k, us in per_step.items():
        print(f"{k:24s} {us:7.2f} us/step")
    out = {"machine": machine(), "steps": n, "us_per_step": per_step}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
