"""Operations used by the execution tests (importable by worker processes)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from metalab._internal._names import safe_experiment_id
from metalab.definition import operation


def _count(context: dict, run_id: str) -> None:
    counter = context.get("counter_dir")
    if counter:
        Path(counter, f"{run_id}.{time.perf_counter_ns()}").write_text("x")


def log_file(context: dict, runtime: object, name: str = "run") -> Path:
    return Path(
        context["root"],
        safe_experiment_id(runtime.experiment_id),  # type: ignore[attr-defined]
        "logs",
        f"{runtime.run_id}_{name}.log",  # type: ignore[attr-defined]
    )


@operation
def basic(context, params, seeds, runtime, capture):
    _count(context, runtime.run_id)
    capture.metric("y", params["x"] * 2)
    capture.metric("seed_index", seeds.replicate_index)
    flag = context.get("fail_flag")
    if flag and os.path.exists(flag) and params["x"] == 2:
        raise ValueError(f"boom for x={params['x']}")
    return {"z": params["x"] + 0.5}


@operation(name="basic")
def basic_v2(context, params, seeds, runtime, capture):
    # same name, different source: the code hash changes, run ids do not
    _count(context, runtime.run_id)
    capture.metric("y", params["x"] * 2)
    return {"z": params["x"] + 0.5, "v": 2}


@operation
def failing(params):
    raise RuntimeError(f"intentional failure {params['x']}")


@operation
def interrupting(params, capture):
    capture.metric("before", 1)
    if params["x"] == 1:
        raise KeyboardInterrupt
    return {"ok": True}


@operation
def logging_op(context, params, runtime, capture):
    capture.log(f"hello from {params['x']}")
    logging.getLogger("userlib.module").info("py-logging info %s", params["x"])
    capture.logger.warning("capture logger %s", params["x"])
    text = log_file(context, runtime).read_text()
    capture.metric("saw_own_log", f"hello from {params['x']}" in text)
    capture.metric("saw_py_log", f"py-logging info {params['x']}" in text)


@operation
def chatty(params, capture):
    tag = f"TAG-{params['x']}"
    for i in range(20):
        logging.getLogger("chatty").warning("%s line %d", tag, i)
        capture.log(f"{tag} direct {i}")
        time.sleep(0.002)


@operation
def stepped(params, capture):
    n = params["n"]
    for i in range(n):
        capture.metric("loss", 1.0 / (i + 1), step=i)
    capture.metric("final", 0.5)


@operation
def printer(params, runtime):
    print(f"printed by {params['x']}")
    sys.stdout.flush()
    os.write(2, f"stderr of {params['x']}\n".encode())
    return {"pid": os.getpid()}


@operation
def slow(context, params, runtime, capture):
    Path(context["started_dir"], runtime.run_id).write_text("x")
    for _ in range(500):
        runtime.check_cancelled()
        time.sleep(0.01)
    capture.metric("done", True)


@operation
def scratch_user(context, runtime, capture):
    p = runtime.scratch_dir / "tmp.txt"
    p.write_text("hello")
    capture.metric("scratch", str(runtime.scratch_dir))
    capture.artifact("from_path", p)
    capture.artifact("obj", {"a": [1, 2, 3]})
    capture.data("table", {"rows": [1, 2]})
    import numpy as np

    capture.data("arr", np.arange(6, dtype="float32").reshape(2, 3))
    capture.metric("curve", 1.0, step=0)
    try:
        capture.data("curve", [1])
    except ValueError as exc:
        capture.metric("conflict_error", type(exc).__name__)
    try:
        capture.metric("../bad", 1)
    except ValueError as exc:
        capture.metric("name_error", type(exc).__name__)
    capture.metric("nan", float("nan"))


def derived_double(run):
    return {"double_y": run.metrics["y"] * 2}


def derived_broken(run):
    raise RuntimeError("derived failure")


@operation
def terminated(params, capture):
    import signal

    capture.metric("before", 1)
    if params["x"] == 1:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal handler raises SystemExit before this ends
    return {"ok": True}


@operation
def blocking(context, runtime, capture):
    """Waits while the file ``context['block']`` exists (at most 30 s); counts its executions."""
    _count(context, runtime.run_id)
    end = time.monotonic() + 30
    while os.path.exists(context["block"]) and time.monotonic() < end:
        time.sleep(0.02)
    capture.metric("done", 1)
