"""Experiment definitions (what to run) and run identity.

See docs/architecture.md.  Nothing here touches a store; numpy is only imported
by ``SeedBundle.numpy()``.
"""

from metalab.definition._canonical import canonical_bytes, fingerprint
from metalab.definition._context import DirPath, FilePath, context_fingerprint, resolve_context
from metalab.definition._experiment import Experiment
from metalab.definition._hashing import context_spec, dir_hash, file_hash
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
    loguniform_int,
    manual,
    randint,
    random,
    uniform,
)
from metalab.definition._resolver import (
    ParamResolver,
    ResolvedSource,
    deserialize_param_source,
    deserialize_seed_plan,
    seed_plan_from_manifest,
    source_from_manifest,
    with_resolver,
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
    "ParamResolver",
    "ParamSource",
    "RandomSource",
    "ResolvedSource",
    "RunSpec",
    "SeedBundle",
    "SeedPlan",
    "canonical_bytes",
    "choice",
    "compute_run_id",
    "context_fingerprint",
    "context_spec",
    "deserialize_param_source",
    "deserialize_seed_plan",
    "dir_hash",
    "file_hash",
    "fingerprint",
    "grid",
    "load_operation",
    "loguniform",
    "loguniform_int",
    "manual",
    "operation",
    "randint",
    "random",
    "resolve_context",
    "seed_plan_from_manifest",
    "seeds",
    "source_from_manifest",
    "uniform",
    "with_resolver",
]
