"""Experiment definitions (what to run) and run identity.

See docs/architecture.md.  Nothing here touches a store; numpy is only imported
by ``SeedBundle.numpy()``.
"""

from metalab.definition._canonical import canonical_bytes, fingerprint
from metalab.definition._context import DirPath, FilePath, context_fingerprint, resolve_context
from metalab.definition._experiment import Experiment
from metalab.definition._identity import RunSpec, compute_run_id
from metalab.definition._operation import ALLOWED_ARGS, Operation, load_operation, operation
from metalab.definition._params import (
    Distribution,
    GridSource,
    ManualSource,
    ParamCase,
    ParamSource,
    RandomSource,
    choice,
    grid,
    loguniform,
    manual,
    randint,
    random,
    source_from_manifest,
    uniform,
)
from metalab.definition._seeds import SeedBundle, SeedPlan, seeds

__all__ = [
    "ALLOWED_ARGS",
    "DirPath",
    "Distribution",
    "Experiment",
    "FilePath",
    "GridSource",
    "ManualSource",
    "Operation",
    "ParamCase",
    "ParamSource",
    "RandomSource",
    "RunSpec",
    "SeedBundle",
    "SeedPlan",
    "canonical_bytes",
    "choice",
    "compute_run_id",
    "context_fingerprint",
    "fingerprint",
    "grid",
    "load_operation",
    "loguniform",
    "manual",
    "operation",
    "randint",
    "random",
    "resolve_context",
    "seeds",
    "source_from_manifest",
    "uniform",
]
