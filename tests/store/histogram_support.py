"""Runs and checks shared by the histogram pushdown tests (FileStore and PostgreSQL).

:func:`fill_tricky` writes runs whose value field ``metrics.v`` holds, per
``params.case``: integers on the bin edges, integers beyond 2^53, one value
repeated, only NaN / inf / -inf, values a few ulps apart around 1e9 (bin
edges that round onto each other), decimals on the edges of ten bins, a mix
of signs, a range beyond float64 (edges that overflow), and booleans or texts
among numbers (a histogram of categories); some runs have no value, and the
group field ``params.g`` mixes texts, booleans, numbers and missing values.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest

from metalab import ValidationError, load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure, query_figure
from metalab.store import Store
from metalab.testing import make_record

#: the cases whose values are all numbers (or missing): computed in the index
NUMERIC = ("int", "bigint", "one", "nonfinite", "tiny", "edges", "signs")
#: the cases the index leaves to the loaded runs (categories; edges beyond float64)
LOADED = ("bool", "text", "huge")
SPECS = [PlotSpec("histogram", "metrics.v", bins=b) for b in (1, 3, 10, 50, 1000)] + [
    PlotSpec("histogram", "metrics.v", group="params.g", bins=7),
    PlotSpec("histogram", None, "metrics.v", group="params.g"),
    PlotSpec("histogram", "params.p", group="status", bins=4),
]


def _values(case: str, i: int, rng: random.Random) -> Any:
    if case == "int":
        return 3 * (i % 20)
    if case == "bigint":
        return 2**53 + (i % 9)
    if case == "one":
        return 7.25
    if case == "nonfinite":
        return [math.nan, math.inf, -math.inf][i % 3]
    if case == "tiny":
        return 1e9 + (i % 5) * 1.2e-7
    if case == "edges":
        return (i % 11) / 10 if i % 2 else (i % 11) * 0.1
    if case == "signs":
        return rng.uniform(-5, 5) if i % 4 else -0.0
    if case == "huge":
        return [-1e308, 1e308, 0.0][i % 3]
    if case == "bool":
        return [True, 1.5, False][i % 3]
    return ["abc", 2.0, "Infinity"][i % 3]  # text


def fill_tricky(store: Store, experiment_id: str, per_case: int = 40) -> None:
    """``per_case`` runs of each case of :data:`NUMERIC` and :data:`LOADED`."""
    rng = random.Random(3)
    i = 0
    for case in NUMERIC + LOADED:
        for j in range(per_case):
            metrics = {} if j % 13 == 5 else {"v": _values(case, j, rng)}
            params: dict[str, Any] = {"case": case, "p": j % 6 * 0.5,
                                      "g": ["a", "b", True, 1, None][j % 5]}
            if j % 5 == 4:
                del params["g"]
            store.put_run_record(make_record(f"r{i:04d}", experiment_id, params=params,
                                             metrics=metrics))
            i += 1


def where_of(case: str | None) -> str | None:
    return None if case is None else f"params.case = '{case}'"


def check_tricky(store: Store, reference: Store) -> int:
    """Every spec over every case (and all runs, and none): the figure ``store``
    computes in its index equals the figure of ``reference``'s loaded runs,
    float for float; returns how many were computed in the index."""
    pushed_count = 0
    for spec in SPECS:
        for case in (*NUMERIC, *LOADED, None, "nothing"):
            where = where_of(case)
            pushed = pushed_figure(store, None, where, spec)
            try:
                loaded = plot_figure(
                    load_results(reference, where=where, columns=spec.fields()), spec)
            except ValidationError as exc:  # (a range too narrow for the bins, or too wide)
                assert pushed is None, (spec.to_query(), case)
                with pytest.raises(ValidationError, match=re.escape(str(exc))):
                    query_figure(store, spec, where)
                continue
            numeric = case in NUMERIC or case == "nothing" or spec.x == "params.p"
            assert (pushed is not None) == numeric, (spec.to_query(), case)
            if pushed is not None:
                pushed_count += 1
                assert identical(pushed, loaded), (spec.to_query(), case)
            else:  # (loaded: as the store's own runs give it; PostgreSQL has no -0.0)
                loaded = plot_figure(load_results(store, where=where, columns=spec.fields()),
                                     spec)
            assert identical(query_figure(store, spec, where), loaded), (spec.to_query(), case)
    return pushed_count


def identical(a: Any, b: Any) -> bool:
    """``a == b``, float for float, a NaN equal to a NaN (the loaded histogram of
    a range beyond float64 has NaN bin centres)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)
