"""A param resolver for the SLURM compatibility test (importable on the node)."""

from __future__ import annotations

from typing import Any


def shift(context_meta: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """x (given as a float) becomes the int x + 1: the run ids must be made from the result."""
    return {**params, "x": int(params["x"]) + 1}
