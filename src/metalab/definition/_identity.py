"""Run identity: :class:`RunSpec` and :func:`compute_run_id`.

A run id is ``sha256(canonical_bytes({"experiment_id", "context_fp", "params_fp",
"seed_fp"})).hexdigest()[:16]``.  The operation's source hash is deliberately
*not* part of it (editing a comment must not force a rerun); it is recorded in
the manifest and the run's provenance instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from metalab._errors import ValidationError
from metalab.definition._canonical import fingerprint
from metalab.definition._seeds import SeedBundle

__all__ = ["RunSpec", "compute_run_id"]


def compute_run_id(experiment_id: str, context_fp: str, params_fp: str, seed_fp: str) -> str:
    """16 hex chars identifying one run; a pure function of its four inputs.

    Raises:
        ValidationError: an input is not a string.
    """
    parts = {
        "experiment_id": experiment_id,
        "context_fp": context_fp,
        "params_fp": params_fp,
        "seed_fp": seed_fp,
    }
    for key, value in parts.items():
        if not isinstance(value, str):
            raise ValidationError(f"compute_run_id: {key} must be a string, got {value!r}")
    return fingerprint(parts)  # the run id is the fingerprint of its parts


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything needed to execute (and identify) one run of an experiment.

    ``index`` is the position in the experiment (params outer, seeds inner);
    ``tags`` come from the param case (e.g. ``("trial_3",)``).
    """

    index: int
    run_id: str
    experiment_id: str
    params: dict[str, Any]
    seed: SeedBundle
    tags: tuple[str, ...]
    context_fingerprint: str
    params_fingerprint: str
    seed_fingerprint: str
