"""Sorting runs and picking the best one: the functions behind ``Results.sort_by`` and ``best``.

Field names are those of the query language (``"metrics.loss"``,
``"params.lr"``, ``"duration_ms"``, ``"derived.x"``), and the order is the
query language's (:mod:`metalab.query._ast`): numbers (and instants) first,
then strings, then booleans, then runs without a value; NaN sorts above
``+inf`` (so ``descending=True`` lists it first among numbers); ties are
broken by experiment id, then run id.  ``Results.where(...)`` and
``metalab runs ls --sort`` order the same way.

The functions here read a :class:`~metalab.analysis.Results` only through
:class:`OrderView` and return positions; they are pure and thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from metalab._errors import ValidationError
from metalab.query import Field, Query, known_fields, lost_cutoff, parse_field
from metalab.query._ast import check_fields, normalize_order
from metalab.query._eval import getter, sort_documents

__all__ = ["OrderView", "best_position", "sorted_positions"]

#: the modes :func:`best_position` accepts
MODES = ("min", "max")


class OrderView(Protocol):
    """What the functions of this module read of a :class:`~metalab.analysis.Results`."""

    def __len__(self) -> int: ...

    def _eval_docs(self, full: bool) -> Iterable[dict[str, Any]]: ...

    def _derived_list(self, experiments: Iterable[str] | None = None) -> list[dict[str, Any]]: ...


def _order(fields: str | Sequence[str], descending: bool | Sequence[bool]) -> tuple[tuple[Field, bool], ...]:
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names:
        raise ValidationError("sort_by needs at least one field, such as 'metrics.loss'")
    if isinstance(descending, bool):
        flags = [descending] * len(names)
    else:
        flags = list(descending)
        if len(flags) != len(names) or not all(isinstance(f, bool) for f in flags):
            raise ValidationError(
                f"descending must be a bool or one bool per field ({len(names)} fields), "
                f"got {descending!r}"
            )
    return normalize_order([(parse_field(n), d) for n, d in zip(names, flags, strict=True)])


def _documents(results: OrderView, query: Query) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(document, derived values) of every run, in order; unknown fields raise."""
    docs = list(results._eval_docs(False))
    derived = results._derived_list() if query.uses_derived else []
    check_fields(query, lambda: known_fields(docs, (d for d in derived if d)),
                 any_runs=bool(docs))
    if derived:
        return list(zip(docs, derived, strict=True))
    return [(doc, None) for doc in docs]


def sorted_positions(
    results: OrderView, fields: str | Sequence[str], descending: bool | Sequence[bool] = False
) -> list[int]:
    """Positions of the runs of ``results`` in the order of ``fields``.

    Raises:
        QuerySyntaxError: a malformed field name.
        QueryError: a field that cannot order runs (``tags``, a whole namespace).
        UnknownFieldError: a params/metrics/derived field no run has.
        ValidationError: no field, or ``descending`` of the wrong length.
    """
    query = Query(order=_order(fields, descending))
    pairs = _documents(results, query)
    slots: dict[int, list[int]] = {}
    for pos, (doc, _) in enumerate(pairs):
        slots.setdefault(id(doc), []).append(pos)
    ordered = sort_documents(pairs, query.order, lost_cutoff())
    # (the same document object twice keeps its positions in order)
    return [slots[id(doc)].pop(0) for doc, _ in ordered]


def _metric_field(metric: str) -> Field:
    if not isinstance(metric, str) or not metric:
        raise ValidationError(f"best() needs a metric name such as 'loss', got {metric!r}")
    field = parse_field(metric if metric.partition(".")[0] in (
        "metrics", "metric", "derived") else f"metrics.{metric}")
    return field


def best_position(results: OrderView, metric: str, mode: str = "min") -> int:
    """Position of the run with the lowest (``mode="min"``) or highest finite ``metric``.

    ``metric`` is a metric name (``"loss"``, ``"metrics.loss"``) or a
    derived one (``"derived.x"``).  Only finite numbers compete: missing
    values, non-numbers, NaN and infinities are passed over.  Among equal
    values the run first by experiment id, then run id, wins.

    Raises:
        ValidationError: an unknown mode, no runs, or no run with a finite value.
        UnknownFieldError: a metric no run has (close names are listed).
    """
    if mode not in MODES:
        raise ValidationError(f"best(mode={mode!r}): use mode='min' or mode='max'")
    field = _metric_field(metric)
    if len(results) == 0:
        raise ValidationError(f"best({metric!r}): there are no runs to choose from")
    pairs = _documents(results, Query(order=((field, False),)))
    value_of = getter(field, lost_cutoff())
    sign = 1 if mode == "min" else -1
    best: tuple[int | float, str, str, int] | None = None
    skipped = 0
    for pos, (doc, der) in enumerate(pairs):
        value = value_of(doc, der)
        if isinstance(value, bool) or not (
                type(value) is int or (isinstance(value, float) and math.isfinite(value))):
            skipped += 1
            continue
        # (ints stay ints: Python compares them with floats exactly, beyond 2^53 too)
        key = (sign * value, str(doc.get("experiment_id")), str(doc.get("run_id")), pos)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValidationError(
            f"best({metric!r}): none of the {len(pairs)} runs has a finite value of "
            f"{field.path} (missing, not a number, NaN or infinite); "
            "filter the runs first or pick another metric"
        )
    return best[3]
