"""An operation and worker-side patches for the Dask cancellation tests (importable by workers).

The patches are installed in every worker process with ``client.run`` and
removed the same way; each waits for a file the test creates, so the test
decides when the worker goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from metalab.definition import operation

#: longest a gated operation or patch waits for its file before going on (seconds)
GATE_MAX_S = 60.0
_POLL_S = 0.02


def _wait_for(path: str) -> None:
    end = time.monotonic() + GATE_MAX_S
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(_POLL_S)


@operation
def gated(context, params, runtime, capture):
    """Marks ``started/{run_id}``, waits for the file ``release``, records ``y = 2 x``."""
    root = context["root"]
    Path(root, "started", runtime.run_id).write_text("x")
    _wait_for(os.path.join(root, "release"))
    capture.metric("y", 2 * params["x"])


_saved: dict[str, Any] = {}


def patch_worker(root: str, *, before_claim: bool) -> None:
    """In a worker: stop each run at the claim until the file ``go`` exists in ``root``.

    ``before_claim``: wait before claiming (else after the claim, before the
    look at the cancel signal).  Marks ``at-gate/{run_id}`` on arrival and
    ``checked/{run_id}.{outcome}`` after the look (``run`` or ``not-started``).
    """
    from metalab.execution import _worker

    _saved.setdefault("claim", _worker._claim)
    _saved.setdefault("check", _worker._check_start)
    claim, check = _saved["claim"], _saved["check"]
    go = os.path.join(root, "go")

    def gated_claim(store: Any, run_id: str, owner: str, **kw: Any) -> None:
        if before_claim:
            Path(root, "at-gate", run_id).write_text("x")
            _wait_for(go)
        claim(store, run_id, owner, **kw)

    def gated_check(job: Any) -> None:
        if not before_claim:
            Path(root, "at-gate", job.run_id).write_text("x")
            _wait_for(go)
        try:
            check(job)
        except _worker.NotStartedError:
            Path(root, "checked", f"{job.run_id}.not-started").write_text("x")
            raise
        Path(root, "checked", f"{job.run_id}.run").write_text("x")

    _worker._claim = gated_claim
    _worker._check_start = gated_check


def unpatch_worker() -> None:
    """Undo :func:`patch_worker` in this worker."""
    from metalab.execution import _worker

    if "claim" in _saved:
        _worker._claim = _saved.pop("claim")
    if "check" in _saved:
        _worker._check_start = _saved.pop("check")
