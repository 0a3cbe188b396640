"""The columns a chart needs, read from a Results without building per-run objects.

:func:`field_values` reads one field of every run: from the column table
when the Results holds one (a query index answered), else from the run
documents, in one list comprehension.  :func:`as_numbers` turns the values
into a float array and says which were missing and which were not numbers;
:func:`categories` numbers the distinct values in a stable order.  numpy and
pandas come in as arguments (the caller imports them lazily).  Pure
functions over data the Results already holds; thread-safe.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from metalab._errors import ValidationError
from metalab._internal._json import NON_FINITE_TEXTS, dumps
from metalab.analysis._tables import ResultsView

__all__ = ["Axis", "Numbers", "as_numbers", "categories", "columns_of", "distinct",
           "field_values", "label"]

#: top-level run fields a chart may use besides params / metrics / derived
TOP_FIELDS = ("duration_ms", "status", "experiment_id")
#: the label of a run without a value in a group or category field
MISSING_LABEL = "(no value)"
#: the tag of a boolean category among numbers (see :func:`categories`)
_BOOL = "\0bool"
#: names listed in the message about an unknown field
_LISTED = 20


def field_values(results: ResultsView, field: str) -> list[Any]:
    """The value of ``field`` (``"params.lr"``, ``"metrics.loss"``, ``"derived.z"``,
    ``"duration_ms"`` ...) for every run, in order; ``None`` where a run has none."""
    ns, _, name = field.partition(".")
    if not name:
        return list(results._column(ns))
    if ns == "derived":
        derived = results._derived_list()
        return [d.get(name) for d in derived] if derived else [None] * _count(results)
    table = results._cols
    if table is not None:
        found = table.fields.get((ns, name))
        if found is not None:
            return found
        whole = table.objects.get(ns)
        if whole is not None:
            return [m.get(name) if type(m) is dict else None for m in whole]
        return [None] * len(table)
    return columns_of(results, [field])[0]


def columns_of(results: ResultsView, fields: list[str]) -> list[list[Any]]:
    """:func:`field_values` of several fields; run documents are visited once for all
    (each visit of a scattered document costs more than the lookups in it)."""
    if results._cols is not None:
        return [field_values(results, f) for f in fields]
    outs: list[list[Any]] = [[] for _ in fields]
    plan: dict[str, list[tuple[str, Any]]] = {}
    for field, out in zip(fields, outs, strict=True):
        ns, _, name = field.partition(".")
        if not name or ns == "derived":
            out.extend(field_values(results, field))
        else:
            plan.setdefault(ns, []).append((name, out.append))
    steps = list(plan.items())
    empty: dict[str, Any] = {}
    for d in results._docs:
        for ns, items in steps:
            values = d.get(ns) or empty
            for name, add in items:
                add(values.get(name))
    return outs


def _count(results: ResultsView) -> int:
    return len(results._cols) if results._cols is not None else len(results._docs)


def require_present(results: ResultsView, field: str, values: list[Any], role: str) -> None:
    """Raise ValidationError when no run has ``field`` (the message lists close names)."""
    if not values or any(v is not None for v in values):
        return
    ns, _, _ = field.partition(".")
    known: list[str] = []
    if ns in ("params", "metrics"):
        seen: dict[str, None] = {}
        for m in results._maps(ns)[:1000]:
            seen.update(dict.fromkeys(m))
        known = [f"{ns}.{k}" for k in seen]
    elif ns == "derived":
        seen = {}
        for m in results._derived_list():
            seen.update(dict.fromkeys(m))
        known = [f"derived.{k}" for k in seen]
    close = difflib.get_close_matches(field, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(map(repr, known[:_LISTED])) or "none"
    raise ValidationError(
        f"no run has the {role} field {field!r}; fields of that kind: {listed}.{hint}")


@dataclass(frozen=True)
class Numbers:
    """``values`` as floats (``nan`` where not a number); ``missing``: no value;
    ``other``: a value that is not a number (a string, bool, list ...)."""

    values: Any
    missing: Any
    other: Any


def as_numbers(np: Any, raw: list[Any]) -> Numbers:
    """Classify ``raw`` values: numbers (inf and NaN kept as such), missing, other.

    Booleans are not numbers (as in the query language).  The non-finite
    texts ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` (how metrics are
    stored in JSON) are the floats they stand for.
    """
    n = len(raw)
    kinds = set(map(type, raw))
    if kinds <= {float, int, type(None)}:
        values = np.array(raw, dtype=np.float64) if n else np.zeros(0)
        if type(None) in kinds:
            missing = np.fromiter((v is None for v in raw), dtype=bool, count=n)
        else:
            missing = np.zeros(n, dtype=bool)
        return Numbers(values, missing, np.zeros(n, dtype=bool))
    values = np.full(n, np.nan)
    missing = np.zeros(n, dtype=bool)
    other = np.zeros(n, dtype=bool)
    texts = NON_FINITE_TEXTS
    for i, v in enumerate(raw):
        t = type(v)
        if t is float or t is int:
            values[i] = v
        elif v is None:
            missing[i] = True
        elif t is str and v in texts:
            values[i] = texts[v]
        else:
            other[i] = True
    return Numbers(values, missing, other)


@dataclass(frozen=True)
class Axis:
    """Distinct values of a field, numbered: ``codes[i]`` is row ``i``'s position
    in ``labels`` (``-1``: left out); ``numeric``: the labels are finite numbers
    (``points`` holds them as floats), in ascending order."""

    codes: Any
    labels: list[Any]
    numeric: bool
    points: Any


def hashable(value: Any) -> Any:
    """A list or object as its JSON text (so it can be a category); other values as they are."""
    return dumps(value).decode() if isinstance(value, list | dict) else value


def _order(value: Any) -> tuple[int, Any]:
    if value is None:
        return (4, "")
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int | float):
        return (1, value if not math.isnan(value) else math.inf)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


def categories(np: Any, pd: Any, raw: list[Any], nums: Numbers | None,
               keep_missing: bool) -> Axis:
    """Number the distinct values of ``raw``: a numeric axis when every value is a
    number (non-finite ones left out, code ``-1``), else categories in a stable
    order (booleans, numbers, strings, the rest; ``None`` last, or left out
    unless ``keep_missing``)."""
    n = len(raw)
    if nums is not None and not nums.other.any() and (~nums.missing).any():
        usable = np.isfinite(nums.values)
        points, inverse = distinct(pd, nums.values[usable])
        codes = np.full(n, -1, dtype=np.int64)
        codes[usable] = inverse
        return Axis(codes, points.tolist(), True, points)
    kinds = set(map(type, raw))
    # (True == 1 in Python: a boolean among numbers is tagged, or both would share
    # a category, as they never do in a query)
    tag = bool in kinds and (int in kinds or float in kinds)
    if tag or list in kinds or dict in kinds:
        keys = [(_BOOL, v) if tag and type(v) is bool else hashable(v) for v in raw]
    else:
        keys = raw
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object), use_na_sentinel=False)
    labels = [u[1] if type(u) is tuple else u for u in uniques]
    order = sorted(range(len(labels)), key=lambda i: _order(labels[i]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    labels = [labels[i] for i in order]
    codes = rank[codes] if len(labels) else np.zeros(n, dtype=np.int64)
    if not keep_missing and labels and _is_missing(labels[-1]):
        codes = np.where(codes == len(labels) - 1, -1, codes)
        labels = labels[:-1]
    return Axis(np.asarray(codes, dtype=np.int64), labels, False, None)


def distinct(pd: Any, values: Any) -> tuple[Any, Any]:
    """``(sorted distinct values, position of each value among them)`` of a numeric
    array, as ``numpy.unique(..., return_inverse=True)`` gives, by hashing (no sort of
    every value)."""
    codes, uniques = pd.factorize(values, sort=True)
    return uniques, codes


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label(value: Any) -> str:
    """The text a category shows (a missing value: :data:`MISSING_LABEL`)."""
    if _is_missing(value):
        return MISSING_LABEL
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
