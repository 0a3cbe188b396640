"""Operations of the liveness and fault tests (importable by worker processes)."""

from __future__ import annotations

import time
from pathlib import Path

from metalab.definition import operation


@operation
def napping(context, params, runtime, capture):
    """Sleeps 0.1-0.2 s; counts its executions in ``context['counter_dir']``."""
    Path(context["counter_dir"], f"{runtime.run_id}.{time.perf_counter_ns()}").write_text("x")
    time.sleep(0.1 + 0.1 * (params["x"] % 2))
    capture.metric("y", params["x"])


@operation
def sometimes_failing(params):
    if params["x"] in (2, 5):
        raise ValueError(f"boom for x={params['x']}\nsecond line of the message")
    return {"y": params["x"]}


@operation
def quick(params):
    return {"y": params["x"]}


@operation
def writer(params, capture):
    """Writes an artifact of ``params['kb']`` KiB (fills a small disk)."""
    capture.artifact("blob", {"pad": "x" * (1024 * int(params["kb"]))})
    return {"y": params["x"]}
