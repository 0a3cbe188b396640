"""Resolved parameter sources: derive or validate params before they identify a run.

``with_resolver(source, resolver, context_meta=None)`` wraps a source so each
case's params become ``resolver(context_meta, params)`` (or
``resolver.resolve(context_meta, params)`` for an object with a ``resolve``
method, the original metalab's ``ParamResolver``).  The *resolved* params are
what a run sees and what its run id is made from; the case keeps the source's
tags.  ``Experiment(param_resolver=r)`` is the same as
``params=with_resolver(params, r)`` with empty ``context_meta``.

Serial, thread, process and Dask executors get the params resolved by the
submitting process.  SLURM array tasks rebuild each case on the node, so they
import the resolver by reference: it must be a module-level function, a
module-level class, or an instance of one whose attributes pickle.  A lambda,
a nested function or a ``__main__``-only definition works everywhere else,
but a SLURM submission (pickling the source) refuses it with a
:class:`ValidationError` that says so, and the experiment manifest records
only its name (it cannot be rebuilt from the manifest).

Thread safety: a resolved source is immutable; the resolver is called on
every ``source[i]`` and must itself be safe to call from several threads.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from metalab._errors import CanonicalizationError, ValidationError
from metalab._internal._refs import import_ref
from metalab.definition._canonical import canonical_bytes
from metalab.definition._params import ParamCase, ParamSource
from metalab.definition._params import source_from_manifest as _base_source_from_manifest
from metalab.definition._seeds import SeedPlan

__all__ = [
    "ParamResolver",
    "ResolvedSource",
    "deserialize_param_source",
    "deserialize_seed_plan",
    "resolver_ref",
    "seed_plan_from_manifest",
    "source_from_manifest",
    "with_resolver",
]

ResolverFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@runtime_checkable
class ParamResolver(Protocol):
    """An object that turns raw params into the params a run uses."""

    def resolve(self, context_meta: dict[str, Any], params_raw: dict[str, Any]) -> dict[str, Any]:
        """Return the resolved params; raise (ValueError, ValidationError) to reject a case."""
        ...


def _not_importable(resolver: Any, why: str) -> ValidationError:
    return ValidationError(
        f"the param resolver {resolver!r} is not importable by reference ({why}); "
        "define it as a module-level function or class in an importable module "
        "(not a lambda, a nested function or the __main__ script) so workers and "
        "the experiment manifest can find it"
    )


def resolver_ref(resolver: Any) -> str:
    """``"module:qualname"`` of a function or class, or of an instance's class.

    Raises:
        ValidationError: the resolver cannot be imported back by that reference.
    """
    target = resolver if callable(resolver) and hasattr(resolver, "__qualname__") else type(resolver)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise _not_importable(resolver, f"defined as {module}.{qualname}")
    ref = f"{module}:{qualname}"
    try:
        found = import_ref(ref)
    except (ImportError, AttributeError) as exc:
        raise _not_importable(resolver, f"{ref} does not import: {exc}") from exc
    if found is not target:
        raise _not_importable(resolver, f"{ref} names another object")
    return ref


def _call(resolver: Any, context_meta: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    method = getattr(resolver, "resolve", None)
    fn = method if callable(method) else resolver
    out = fn(copy.deepcopy(context_meta), params)
    if not isinstance(out, Mapping):
        raise ValidationError(
            f"the param resolver {resolver!r} returned {type(out).__name__}; it must return "
            "the resolved params as a dict"
        )
    return dict(out)


class ResolvedSource(ParamSource):
    """A source whose cases pass through a resolver; built by :func:`with_resolver`.

    Indexable in O(1) like its source (``source[i]`` resolves case ``i`` only),
    so SLURM array tasks rebuild exactly the cases the submitter identified.
    """

    def __init__(
        self, source: ParamSource, resolver: Any, context_meta: Mapping[str, Any] | None = None
    ) -> None:
        if not isinstance(source, ParamSource):
            raise ValidationError(
                f"with_resolver(source, ...): source must be a param source such as grid(...), "
                f"got {type(source).__name__}"
            )
        method = getattr(resolver, "resolve", None)
        if not callable(method) and not callable(resolver):
            raise ValidationError(
                "with_resolver(..., resolver): the resolver must be a function "
                "(context_meta, params) -> dict or an object with a resolve(context_meta, params) "
                f"method, got {type(resolver).__name__}"
            )
        meta = {} if context_meta is None else context_meta
        if not isinstance(meta, Mapping):
            raise ValidationError(
                f"with_resolver(..., context_meta): must be a dict or None, got {type(meta).__name__}"
            )
        try:
            canonical_bytes(dict(meta))
        except CanonicalizationError as exc:
            raise ValidationError(f"with_resolver(..., context_meta): {exc}") from exc
        self._source = source
        self._resolver = resolver
        self._context_meta = copy.deepcopy(dict(meta))

    @property
    def source(self) -> ParamSource:
        """The wrapped (raw) source."""
        return self._source

    @property
    def resolver(self) -> Any:
        return self._resolver

    @property
    def context_meta(self) -> dict[str, Any]:
        return copy.deepcopy(self._context_meta)

    def with_context(self, context_meta: Mapping[str, Any]) -> ResolvedSource:
        """The same source and resolver with other ``context_meta``."""
        return ResolvedSource(self._source, self._resolver, context_meta)

    def __len__(self) -> int:
        return len(self._source)

    def _case(self, index: int) -> ParamCase:
        raw = self._source[index]
        return ParamCase(_call(self._resolver, self._context_meta, raw.params), tags=raw.tags)

    def to_manifest(self) -> dict[str, Any]:
        """``{"type": "resolved", "source", "resolver": "module:qualname", "context_meta"}``
        (plus ``"resolver_state"`` for a resolver instance).

        The state of a resolver instance goes into the manifest (a file in the
        store) only if its class says what to write: ``to_manifest_dict()``
        returning a JSON-like dict (and, to rebuild, ``from_manifest_dict(d)``
        or attributes set from it).  Other instances are recorded with
        ``"resolver_state": None``: their attributes may hold secrets (an API
        key) or objects that are no JSON (a model, a connection).

        A resolver that cannot be imported by reference (a lambda, a nested
        function) is described as ``"resolver": None`` with its name in
        ``"resolver_name"``: the manifest still documents the experiment, but
        :func:`source_from_manifest` cannot rebuild it.
        """
        out: dict[str, Any] = {
            "type": "resolved",
            "source": self._source.to_manifest(),
            "context_meta": copy.deepcopy(self._context_meta),
            "total_cases": len(self),
        }
        try:
            out["resolver"] = resolver_ref(self._resolver)
        except ValidationError:
            out["resolver"] = None
            target = self._resolver if hasattr(self._resolver, "__qualname__") else type(self._resolver)
            out["resolver_name"] = f"{target.__module__}.{target.__qualname__}"
            return out
        if not hasattr(self._resolver, "__qualname__"):  # an instance
            out["resolver_state"] = _resolver_state(self._resolver)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        resolver_ref(self._resolver)  # a clear error before pickle's own
        return (ResolvedSource, (self._source, self._resolver, self._context_meta))

    def __repr__(self) -> str:
        return f"ResolvedSource({self._source!r}, resolver={self._resolver!r})"


def with_resolver(
    source: ParamSource,
    resolver: ParamResolver | ResolverFn,
    context_meta: Mapping[str, Any] | None = None,
) -> ResolvedSource:
    """Wrap ``source`` so every case's params go through ``resolver`` (see the module doc).

    Example::

        def to_int(context_meta, params):
            return {**params, "n": int(params["n"])}

        params = with_resolver(grid(n=[1e3, 1e4]), to_int)

    Raises:
        ValidationError: ``source`` is not a param source, ``resolver`` is not
            callable, or ``context_meta`` is not a JSON-like dict.  Errors the
            resolver raises surface when a case is built (at ``run()``).
    """
    return ResolvedSource(source, resolver, context_meta)


def _resolver_from_manifest(d: Mapping[str, Any]) -> Any:
    ref = d["resolver"]
    if ref is None:
        raise ValidationError(
            f"the param resolver of this manifest ({d.get('resolver_name', 'unnamed')}) was not "
            "importable when the manifest was written, so the source cannot be rebuilt from it; "
            "rebuild it with with_resolver(source, resolver), or define the resolver at module level"
        )
    try:
        found = import_ref(ref)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValidationError(
            f"the param resolver {ref!r} of this manifest cannot be imported ({exc}); "
            "make its module importable (PYTHONPATH) before rebuilding the source"
        ) from exc
    if "resolver_state" not in d:
        return found
    state = d["resolver_state"]
    if state is None:
        raise ValidationError(
            f"the param resolver {ref!r} of this manifest is an instance whose state was not "
            "recorded (its class has no to_manifest_dict()); rebuild the source with "
            "with_resolver(source, resolver), or give the class to_manifest_dict() and "
            "from_manifest_dict()"
        )
    if callable(rebuild := getattr(found, "from_manifest_dict", None)):
        return rebuild(copy.deepcopy(state))
    instance = found.__new__(found)
    instance.__dict__.update(copy.deepcopy(state))
    return instance


def _resolver_state(resolver: Any) -> dict[str, Any] | None:
    """What a resolver instance's ``to_manifest_dict()`` says to record; None without one.

    Raises:
        ValidationError: ``to_manifest_dict()`` returned something that is no
            JSON-like dict.
    """
    describe = getattr(resolver, "to_manifest_dict", None)
    if not callable(describe):
        return None
    state = describe()
    try:
        canonical_bytes(state)
    except CanonicalizationError as exc:
        raise ValidationError(
            f"{type(resolver).__qualname__}.to_manifest_dict() must return a JSON-like dict "
            f"(it goes into the experiment manifest): {exc}"
        ) from None
    if not isinstance(state, dict):
        raise ValidationError(
            f"{type(resolver).__qualname__}.to_manifest_dict() must return a dict, "
            f"got {type(state).__name__}"
        )
    return state


def source_from_manifest(d: Mapping[str, Any]) -> ParamSource:
    """Rebuild any param source (grid, random, manual, resolved) from its manifest.

    Raises:
        ValidationError: unknown ``type``, malformed manifest, or a resolver
            that cannot be imported.
    """
    if isinstance(d, Mapping) and d.get("type") == "resolved":
        try:
            source, resolver = source_from_manifest(d["source"]), _resolver_from_manifest(d)
            return ResolvedSource(source, resolver, d.get("context_meta"))
        except (KeyError, TypeError) as exc:
            raise ValidationError(
                f"malformed resolved param source manifest ({type(exc).__name__}: {exc})"
            ) from exc
    return _base_source_from_manifest(d)


def seed_plan_from_manifest(d: Mapping[str, Any]) -> SeedPlan:
    """Rebuild a seed plan from ``plan.to_manifest()``.  Raises ValidationError if malformed."""
    return SeedPlan.from_manifest(d)


#: the original metalab's names for the two rebuilders
deserialize_param_source = source_from_manifest
deserialize_seed_plan = seed_plan_from_manifest
