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
