"""Helpers of the query tests: raw run documents written like the store writes them."""

from __future__ import annotations

from typing import Any

from metalab._internal._json import dumps
from metalab.store import FileStore


def write_doc(store: FileStore, doc: dict[str, Any], *, logged: bool = True) -> None:
    """Write a raw run document the way the store does (atomic), bypassing RunRecord.

    ``logged=False`` leaves out the change-log line, like a file copied in by hand.
    """
    from metalab._internal._atomic import atomic_write_bytes
    from metalab.store._changes import note_change

    folder = store.get_working_directory()
    store._ensure_meta()
    atomic_write_bytes(f"{folder}/runs/{doc['run_id']}.json", dumps(doc))
    if logged:
        note_change(folder, "r", doc["run_id"])


def make_doc(i: int, experiment_id: str = "q:1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": f"r{i:03d}",
        "experiment_id": experiment_id,
        "status": "success",
        "params": {"lr": 10.0 ** -(i % 4), "name": f"res{i % 3}", "depth": i % 5},
        "metrics": {"score": i / 10},
        "tags": ["even"] if i % 2 == 0 else [],
        "started_at": f"2026-01-01T00:00:{i % 60:02d}.000000Z",
        "finished_at": None,
        "duration_ms": float(i),
        "schema_version": 1,
    }
    doc.update(changes)
    return doc


def wait_for_a_later_tick(store: FileStore) -> None:
    """Return once a file changed now gets a later mtime than ``runs/`` and every
    change log of the store: a change made after this lands in a later filesystem
    timestamp tick than the writes before it (ticks are coarse: 1-10 ms, more on
    some filesystems), however slow the machine."""
    import glob
    import os
    import time

    folder = store.get_working_directory()
    paths = [os.path.join(folder, "runs"), *glob.glob(os.path.join(folder, ".changes", "*"))]
    newest = max(os.stat(p).st_mtime_ns for p in paths if os.path.exists(p))
    probe = os.path.join(os.path.dirname(folder), ".tick-probe")  # same filesystem
    with open(probe, "w"):
        pass
    deadline = time.monotonic() + 30
    try:
        while True:
            os.utime(probe)  # the filesystem's clock, as a write would see it
            if os.stat(probe).st_mtime_ns > newest:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the filesystem clock did not advance in 30 s")
            time.sleep(0.001)
    finally:
        os.unlink(probe)
