"""An operation module that cannot be imported on SLURM nodes (simulates a missing package)."""

from __future__ import annotations

import os

if os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
    raise ImportError("simulated: package 'fancylib' is not installed on this node")

from metalab.definition import operation


@operation
def needs_fancylib(params):
    return {"y": params["x"]}
