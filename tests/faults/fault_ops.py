"""Operations and experiments of the fault scoreboard (importable by worker processes).

Every run of :func:`make_experiment` writes all kinds of captured data (a
metric series, structured data, an artifact, log lines, stdout) so that a
``kill -9`` can land inside any of the store's writes, and it leaves one
empty file per execution in ``context["counter_dir"]`` (name
``{run_id}.{pid}.{ns}``) so a test can count executions without trusting
the store.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from metalab.definition import Experiment, grid, operation, seeds


@operation
def faulty_work(context, params, seeds, runtime, capture):
    Path(context["counter_dir"], f"{runtime.run_id}.{os.getpid()}.{time.perf_counter_ns()}").touch()
    x = params["x"]
    rng = seeds.rng("work")
    for step in range(3):
        capture.metric("loss", 1.0 / (x + step + 1), step=step)
    time.sleep(context["sleep"] * (1 + x % 3))
    capture.data("vector", [x, x * 2, rng.random()])
    payload = hashlib.sha256(f"{runtime.run_id}".encode()).digest() * 64
    capture.artifact("blob", payload, kind="bytes")
    capture.log(f"run x={x} done")
    print(f"stdout of x={x}", flush=True)
    capture.metric("y", x * 2)
    return {"z": x + 0.5}


def make_experiment(counter_dir: str, n: int, sleep: float = 0.04) -> Experiment:
    """The same experiment in the launcher and in the checking test (same run ids)."""
    return Experiment(
        name="faults",
        version="1",
        context={"counter_dir": counter_dir, "sleep": sleep},
        operation=faulty_work,
        params=grid(x=list(range(n))),
        seeds=seeds(base=7, replicates=1),
    )
