"""Operations used by the PostgreSQL executor tests (importable by worker processes)."""

from __future__ import annotations

from metalab.definition import operation


@operation
def score(params, capture):
    capture.metric("y", params["x"] * 2)
    return {"z": params["x"] + 0.5}
