"""The :class:`Experiment` definition: what to run, over which params and seeds."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from metalab._errors import ValidationError
from metalab._internal._names import MAX_NAME_LENGTH
from metalab._version import __version__
from metalab.definition._canonical import fingerprint
from metalab.definition._context import context_fingerprint, resolve_context
from metalab.definition._identity import RunSpec, compute_run_id
from metalab.definition._operation import Operation
from metalab.definition._params import ParamSource
from metalab.definition._resolver import ResolvedSource, with_resolver
from metalab.definition._seeds import SeedBundle, SeedPlan

__all__ = ["Experiment"]


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"Experiment {what} must be a non-empty string, got {value!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ValidationError(f"Experiment {what} {value!r} contains control characters")
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class Experiment:
    """An experiment: ``operation`` run for every params case x seed replicate.

    Runs are ordered params-outer, seeds-inner: run ``i`` uses param case
    ``i // len(seeds)`` and seed bundle ``i % len(seeds)``.

    Args:
        name: non-empty, no ``':'`` (the id is ``"name:version"``).
        version: non-empty string; bump it when results are not comparable.
        context: any canonicalizable value (may hold FilePath/DirPath).
        operation: an :class:`Operation` or a plain function (wrapped).
        params: a :class:`ParamSource` (``grid``, ``random``, ``manual``).
        seeds: a :class:`SeedPlan` (``seeds(base, replicates)``).
        description, tags, metadata: stored in the manifest, not in run ids;
            ``tags`` also go to every run's tags (before the param case's own).
        param_resolver: optional function ``(context_meta, params) -> params``
            or object with ``resolve(context_meta, params)``; ``params`` is
            then wrapped as ``with_resolver(params, param_resolver)`` (empty
            ``context_meta``), so every executor, SLURM included, runs and
            identifies the *resolved* params.  It must be importable by
            reference for process, Dask and SLURM workers.

    The fields follow the original metalab's order (``description, tags,
    param_resolver, metadata`` after ``seeds``).

    The object is immutable; ``context_fingerprint`` is computed once (on first
    use, which stats the context's files) and cached.

    Raises:
        ValidationError: at construction, for any invalid argument.
    """

    name: str
    version: str
    context: Any
    operation: Operation
    params: ParamSource
    seeds: SeedPlan
    description: str | None = None
    tags: Sequence[str] = ()
    param_resolver: Any = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_text(self.name, "name")
        if ":" in self.name:
            raise ValidationError(
                f"Experiment name {self.name!r} must not contain ':' (the experiment id is "
                "'name:version'); use '_' or '-' instead"
            )
        _check_text(self.version, "version")
        if len(self.name) + len(self.version) + 1 > MAX_NAME_LENGTH:  # the id is name:version
            raise ValidationError(
                f"Experiment name and version together exceed {MAX_NAME_LENGTH} characters"
            )
        op = self.operation
        if not isinstance(op, Operation):
            if not callable(op):
                raise ValidationError(
                    f"Experiment operation must be a function or @operation, got "
                    f"{type(op).__name__}"
                )
            op = Operation(op)
        object.__setattr__(self, "operation", op)
        if not isinstance(self.params, ParamSource):
            raise ValidationError(
                f"Experiment params must be a param source such as grid(...), random(...) or "
                f"manual([...]), got {type(self.params).__name__}"
            )
        already = isinstance(self.params, ResolvedSource) and (
            self.params.resolver is self.param_resolver
        )  # dataclasses.replace() passes the wrapped source back in
        if self.param_resolver is not None and not already:
            object.__setattr__(self, "params", with_resolver(self.params, self.param_resolver))
        if not isinstance(self.seeds, SeedPlan):
            raise ValidationError(
                f"Experiment seeds must be seeds(base, replicates), got {type(self.seeds).__name__}"
            )
        if self.description is not None and not isinstance(self.description, str):
            raise ValidationError(
                f"Experiment description must be a string or None, got {self.description!r}"
            )
        if isinstance(self.tags, str) or not isinstance(self.tags, list | tuple):
            raise ValidationError(
                f"Experiment tags must be a list or tuple of strings, got {self.tags!r}"
            )
        if not all(isinstance(t, str) for t in self.tags):
            raise ValidationError(f"Experiment tags must all be strings, got {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))
        metadata = {} if self.metadata is None else self.metadata
        if not isinstance(metadata, dict):
            raise ValidationError(
                f"Experiment metadata must be a dict or None, got {type(metadata).__name__}"
            )
        object.__setattr__(self, "metadata", metadata)

    @property
    def experiment_id(self) -> str:
        """``"name:version"``."""
        return f"{self.name}:{self.version}"

    @property
    def total_runs(self) -> int:
        """``len(params) * len(seeds)``."""
        return len(self.params) * len(self.seeds)

    @functools.cached_property
    def context_fingerprint(self) -> str:
        """Fingerprint of the context (computed once; stats/hashes its files).

        Raises:
            ValidationError: a declared file is missing.
            CanonicalizationError: the context cannot be encoded.
        """
        return context_fingerprint(self.context)

    def spec(self, index: int) -> RunSpec:
        """The :class:`RunSpec` of run ``index`` in O(1).

        Raises:
            IndexError: ``index`` is negative or ``>= total_runs``.
            CanonicalizationError: the params (or context) contain NaN/inf or an
                unsupported value; the message names the key (``params.lr``).
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"run index must be an int, got {type(index).__name__}")
        total = self.total_runs
        if not 0 <= index < total:
            raise IndexError(f"run index {index} out of range (experiment has {total} runs)")
        replicates = len(self.seeds)
        case = self.params[index // replicates]
        seed = self.seeds[index % replicates]
        return self._build(index, case.params, case.tags, seed)

    def _build(
        self, index: int, params: dict[str, Any], tags: tuple[str, ...], seed: SeedBundle
    ) -> RunSpec:
        ctx_fp = self.context_fingerprint
        params_fp = fingerprint(params, path="params")
        seed_fp = fingerprint(seed.to_dict())
        return RunSpec(
            index=index,
            run_id=compute_run_id(self.experiment_id, ctx_fp, params_fp, seed_fp),
            experiment_id=self.experiment_id,
            params=params,
            seed=seed,
            tags=tuple(dict.fromkeys((*self.tags, *tags))),
            context_fingerprint=ctx_fp,
            params_fingerprint=params_fp,
            seed_fingerprint=seed_fp,
        )

    def iter_specs(self) -> Iterator[RunSpec]:
        """All run specs in index order (lazily; params outer, seeds inner)."""
        index = 0
        bundles = list(self.seeds)
        for case in self.params:
            for seed in bundles:
                # each run gets its own params dict: mutations never leak between runs
                params = case.params if seed.replicate_index == 0 else copy.deepcopy(case.params)
                yield self._build(index, params, case.tags, seed)
                index += 1

    def manifest(self, run_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-friendly description of the experiment (stored under ``experiments/``).

        Keys: experiment_id, name, version, description, tags, metadata,
        operation {ref, name, code_hash}, params, seeds, context_fingerprint,
        context (file fingerprints by location), total_runs, run_ids (None or a
        list), created_by ({"metalab": version}).

        Raises:
            ValidationError / CanonicalizationError: as ``context_fingerprint``.
        """
        _, ctx_manifest = resolve_context(self.context)
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "operation": {
                "ref": self.operation.ref,
                "name": self.operation.name,
                "code_hash": self.operation.code_hash,
            },
            "params": self.params.to_manifest(),
            "seeds": self.seeds.to_manifest(),
            "context_fingerprint": self.context_fingerprint,
            "context": ctx_manifest,
            "total_runs": self.total_runs,
            "run_ids": None if run_ids is None else list(run_ids),
            "created_by": {"metalab": __version__},
        }
