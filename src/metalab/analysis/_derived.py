"""Derived metrics: values computed from a finished run after the fact.

A derived-metric function takes a :class:`~metalab.analysis.Run` and returns a
dict of JSON values (``{"auc": 0.93}``); a value may also be an infinite or
NaN float, stored as the text ``"Infinity"``, ``"-Infinity"`` or ``"NaN"``
and read back as the float (see :mod:`metalab._internal._json`).  Functions are given either as
callables (any callable works in-process, lambdas included) or as
``"package.module:function"`` references, which is the form to use when the
computation must be repeatable from another process or the command line.

A failing function never aborts a batch: :func:`compute_derived_for_run`
logs a warning naming the run and the function and goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from metalab._errors import ValidationError
from metalab._internal import _json
from metalab._internal._refs import import_reference

if TYPE_CHECKING:
    from metalab.analysis._run import Run

__all__ = [
    "DerivedFn",
    "compute_derived_for_run",
    "derived_fn_name",
    "resolve_derived",
    "resolve_derived_many",
]

log = logging.getLogger("metalab.analysis")

DerivedFn = Callable[["Run"], Mapping[str, Any]]


def resolve_derived(fn_or_ref: DerivedFn | str) -> DerivedFn:
    """Turn a callable or a ``"module:function"`` reference into a callable.

    The part after ``:`` may be a dotted path (``"pkg.mod:Class.method"``).

    Raises:
        ValidationError: the reference is malformed, cannot be imported, or
            does not name a callable.
    """
    if callable(fn_or_ref):
        return fn_or_ref
    if not isinstance(fn_or_ref, str):
        raise ValidationError(
            f"a derived metric must be a callable or a 'module:function' string, "
            f"got {type(fn_or_ref).__name__}"
        )
    obj = import_reference(fn_or_ref, "derived metric", "function")
    if not callable(obj):
        raise ValidationError(
            f"derived metric reference {fn_or_ref!r} names a {type(obj).__name__}, "
            "not a callable"
        )
    return obj


def resolve_derived_many(
    fns: DerivedFn | str | Iterable[DerivedFn | str],
) -> list[tuple[str, DerivedFn]]:
    """Resolve one function/reference or an iterable of them to ``(name, fn)`` pairs.

    Raises:
        ValidationError: see :func:`resolve_derived`; also for an empty list.
    """
    items: list[DerivedFn | str] = (
        [fns] if isinstance(fns, str) or callable(fns) else list(fns)
    )
    if not items:
        raise ValidationError("compute_derived needs at least one function")
    out = []
    for item in items:
        fn = resolve_derived(item)
        out.append((item if isinstance(item, str) else derived_fn_name(fn), fn))
    return out


def derived_fn_name(fn: Callable[..., Any]) -> str:
    """A readable ``module:qualname`` for messages."""
    qual = getattr(fn, "__qualname__", None) or type(fn).__name__
    mod = getattr(fn, "__module__", None)
    return f"{mod}:{qual}" if mod else str(qual)


_INVALID = object()


def _normalize(value: Any) -> Any:
    """The value as it will read back from JSON, or ``_INVALID``."""
    try:
        return _json.loads(_json.dumps(value))
    except (TypeError, ValueError):
        return _INVALID


def compute_derived_for_run(
    run: Run, fns: DerivedFn | str | Iterable[DerivedFn | str]
) -> dict[str, Any]:
    """Call every function on ``run`` and merge their dicts (later functions win).

    A function that raises, returns something other than a dict, or returns
    keys that are not strings or values that are not JSON-encodable is
    reported with a warning on the ``metalab.analysis`` logger naming the run
    and the function; its (offending) output is dropped and the others go on.
    A value that is an infinite or NaN float is kept as such (numpy scalars
    become Python ones); one inside a list or object cannot be stored (JSON
    has no such numbers) and is reported and dropped like other bad values,
    as is a text ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (reserved for
    those numbers in the stored files).

    Raises:
        ValidationError: only when a reference in ``fns`` cannot be resolved.
    """
    merged: dict[str, Any] = {}
    for name, fn in resolve_derived_many(fns):
        try:
            out = fn(run)
        except Exception as exc:
            log.warning(
                "derived metric %s failed for run %s: %s: %s",
                name, run.run_id, type(exc).__name__, exc,
            )
            continue
        if not isinstance(out, Mapping):
            log.warning(
                "derived metric %s returned %s for run %s; it must return a dict such as "
                "{'name': value}; ignoring it",
                name, type(out).__name__, run.run_id,
            )
            continue
        for key, value in out.items():
            if not isinstance(key, str):
                log.warning(
                    "derived metric %s returned a non-string key %r for run %s; ignoring it",
                    name, key, run.run_id,
                )
                continue
            if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                merged[key] = float(value)  # (stored as its text, see the module docstring)
                continue
            value = _normalize(value)
            if value is _INVALID:
                log.warning(
                    "derived metric %s returned a value for %r that is not JSON-encodable "
                    "(%s) for run %s; ignoring it",
                    name, key, type(out[key]).__name__, run.run_id,
                )
                continue
            if isinstance(value, str) and value in _json.NON_FINITE_TEXTS:
                log.warning(
                    "derived metric %s returned the text %r for %r for run %s: that text is "
                    "reserved for the number %r in stored files; return the float instead; "
                    "ignoring it", name, value, key, run.run_id, _json.NON_FINITE_TEXTS[value],
                )
                continue
            if isinstance(value, list | dict) and _json.has_non_finite(out[key]):
                log.warning(
                    "derived metric %s returned a value for %r holding NaN or an infinity "
                    "inside a list or object for run %s; JSON cannot store it there (return "
                    "such numbers as values of their own); ignoring it",
                    name, key, run.run_id,
                )
                continue
            merged[key] = value
    return merged
