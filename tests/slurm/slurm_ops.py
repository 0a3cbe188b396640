"""Operations used by the SLURM and Dask tests (importable on the nodes / workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from metalab.definition import operation


def _count(context: dict, run_id: str, tag: str) -> None:
    counter = context.get("counter_dir")
    if counter:
        Path(counter, f"{run_id}.{tag}.{os.getpid()}.{time.perf_counter_ns()}").write_text("x")


@operation
def square(context, params, seeds, runtime, capture):
    """Records start/end marker files so tests can check no run executed twice at once."""
    _count(context, runtime.run_id, "start")
    delay = float(context.get("sleep", 0.0))
    if delay:
        time.sleep(delay)
    print(f"square of {params['x']}")
    capture.metric("y", params["x"] ** 2)
    _count(context, runtime.run_id, "end")
    return {"seed_index": seeds.replicate_index}


@operation
def sleeper(context, params, runtime, capture):
    """Sleeps ``context['sleep']`` seconds in small steps (SIGTERM interrupts it)."""
    _count(context, runtime.run_id, "start")
    Path(context["counter_dir"], f"running.{runtime.run_id}.{os.getpid()}").write_text(str(os.getpid()))
    end = time.monotonic() + float(context["sleep"])
    while time.monotonic() < end:
        time.sleep(0.05)
    capture.metric("x", params["x"])
    _count(context, runtime.run_id, "end")
