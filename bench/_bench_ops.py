"""Operations for the execution benchmark (importable by workers and SLURM nodes)."""

from __future__ import annotations

from metalab.definition import operation


@operation
def noop(params):
    return None
