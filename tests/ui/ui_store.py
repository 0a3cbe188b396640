"""The UI tests' generated store (a sweep with series and artifacts, a failed
run, a running run, a param value that is HTML) on a FileStore and on a PostgresStore."""

from __future__ import annotations

import math
import struct
import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import metalab
from metalab.model import RunRecord, Status

EXPERIMENT = "sweep:1"
SCRIPT = "<script>alert(1)</script>"
#: the run id of the hand-written running run (a live heartbeat)
RUNNING_ID = "0123456789abcdef0123456789abcdef"
SERIES_STEPS = 300


def png_bytes(size: int = 96) -> bytes:
    """A small valid PNG (a colour gradient)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // size, y * 255 // size, 160)) for x in range(size))
        for y in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@metalab.operation
def train(params: Any, seeds: Any, capture: Any) -> None:
    """A sweep's operation: a loss series, a score, artifacts on one case, fails at lr=1."""
    import numpy as np

    rng = seeds.rng("noise")
    lr = params["lr"]
    loss = 1.0
    decay = min(lr, 0.5) / (20 if params["model"] == "resnet" else 35)
    for step in range(SERIES_STEPS):
        loss = loss * (1 - decay) + rng.random() * 0.004
        capture.metric("loss", loss, step=step)
    capture.log(f"model {params['model']} lr={lr}")
    capture.log(f"finished with {SCRIPT}")
    if lr >= 1.0:
        raise ValueError(f"diverged at lr={lr}")
    capture.metric("score", 1 - loss)
    if lr == 0.01 and params["model"] == "resnet":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "curve.png"
            path.write_bytes(png_bytes())
            capture.artifact("curve", path)
        capture.artifact("summary", {"lr": lr, "note": SCRIPT})
        capture.artifact("weights", np.arange(12, dtype=float).reshape(3, 4))
        capture.artifact("readme", "plain text artifact\nline 2", kind="text")
        capture.data("confusion", [[3, 1], [0, 4]])


def sweep() -> metalab.Experiment:
    return metalab.Experiment(
        name="sweep", version="1", description=f"learning rate sweep {SCRIPT}",
        tags=("demo", SCRIPT), operation=train, context={},
        params=metalab.grid(lr=[0.01, 0.1, 1.0], model=["resnet", SCRIPT]),
        seeds=metalab.seeds(base=3, replicates=3),
    )


def fill(store_target: Any) -> None:
    """Run the sweep into ``store_target`` and add a running run with a live heartbeat."""
    metalab.run(sweep(), store=store_target).result()
    store = metalab.store.make_store(store_target, experiment_id=EXPERIMENT)
    try:
        now = datetime.now(UTC)
        store.put_run_record(RunRecord(
            run_id=RUNNING_ID, experiment_id=EXPERIMENT, status=Status.RUNNING,
            params={"lr": 0.5, "model": "resnet"}, seed={"root_seed": 3, "replicate_index": 0},
            started_at=now, heartbeat_at=now, metrics={"score": math.inf}))
        store.append_log(RUNNING_ID, "run", "step 1\nstep 2\n")
    finally:
        store.close()
