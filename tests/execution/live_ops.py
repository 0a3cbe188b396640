"""Operations of the live-capture tests (importable by worker processes)."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings

from metalab.definition import operation

#: set by a thread-executed run once it has captured its steps
REACHED = threading.Event()
#: set by the test to let that run end
RELEASE = threading.Event()
#: longest a gated run waits for the test
GATE_TIMEOUT_S = 60.0

POINTS = (1.5, float("inf"), float("nan"))


def _capture_points(capture) -> None:
    for step, value in enumerate(POINTS):
        capture.metric("loss", value, step=step)
    capture.metric("acc", 0.25, step=0)


@operation
def steps_then_event(capture):
    """Captures three steps of ``loss`` (and one of ``acc``), then waits on RELEASE."""
    _capture_points(capture)
    REACHED.set()
    RELEASE.wait(GATE_TIMEOUT_S)
    capture.metric("loss", 0.5, step=3)


@operation
def steps_then_gate(context, capture):
    """As :func:`steps_then_event` across processes: waits while the file ``context['gate']`` exists."""
    _capture_points(capture)
    with open(context["reached"], "w") as fh:
        fh.write("x")
    end = time.monotonic() + GATE_TIMEOUT_S
    while os.path.exists(context["gate"]) and time.monotonic() < end:
        time.sleep(0.02)
    capture.metric("loss", 0.5, step=3)


@operation
def talker(params):
    """Prints, writes to stderr and warns, naming its parameter."""
    x = params["x"]
    for i in range(5):
        print(f"print of {x} line {i}")
        time.sleep(0.001)
    print(f"stderr of {x}", file=sys.stderr)
    warnings.warn(f"warning of {x}", UserWarning, stacklevel=1)
    return {"x": x}


@operation
def fails_on_two(params):
    if params["x"] == 2:
        raise ValueError(f"bad x {params['x']}\nsecond line of the message")
    return {"ok": 1}


@operation
def fails_or_waits(params):
    """x=2 fails at once; the other runs wait on RELEASE (so a failure is seen while they run)."""
    if params["x"] == 2:
        raise ValueError("bad x 2\nsecond line of the message")
    RELEASE.wait(GATE_TIMEOUT_S)
    return {"ok": 1}


@operation
def prints_then_interrupts(params):
    print(f"before the interrupt {params['x']}")
    raise KeyboardInterrupt
