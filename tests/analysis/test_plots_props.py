"""Properties of the chart settings and of the downsampling and statistics behind the charts."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalab import ValidationError
from metalab.analysis import PlotSpec
from metalab.analysis._plots_sample import lttb_indices, minmax_indices, sample_indices
from metalab.analysis._plots_stats import group_stats

names = st.text(min_size=1, max_size=12).filter(lambda s: s[0] not in "\"'")
fields = st.one_of(
    st.builds(lambda ns, n: f"{ns}.{n}", st.sampled_from(["params", "metrics", "derived"]), names),
    st.sampled_from(["duration_ms", "status", "experiment_id"]),
)


@st.composite
def specs(draw: st.DrawFn) -> PlotSpec:
    kind = draw(st.sampled_from(["scatter", "line", "bar", "histogram"]))
    x = draw(fields)
    y = draw(fields) if kind in ("scatter", "line") else draw(st.none() | fields)
    return PlotSpec(kind, x, y, draw(st.none() | fields), draw(st.booleans()),
                    draw(st.sampled_from([None, "std", "sem", "ci95"])),
                    draw(st.integers(1, 1000)), draw(st.integers(10, 10_000_000)))


@settings(max_examples=300, deadline=None)
@given(specs())
def test_spec_round_trips_through_the_query_string(spec: PlotSpec) -> None:
    query = spec.to_query()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in query.items())
    assert PlotSpec.from_query(query) == spec


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(PlotSpec.QUERY_KEYS), st.text(max_size=8)))
def test_from_query_either_builds_a_spec_or_raises_validation_error(query: dict[str, str]) -> None:
    try:
        spec = PlotSpec.from_query(query)
    except ValidationError as exc:
        assert str(exc)
    else:
        assert PlotSpec.from_query(spec.to_query()) == spec


finite_floats = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=3000), st.integers(4, 200))
def test_minmax_keeps_ends_and_extremes_within_budget(values: list[float], budget: int) -> None:
    y = np.array(values)
    idx = minmax_indices(np, y, budget)
    assert len(idx) <= budget
    assert list(idx) == sorted(set(idx.tolist()))
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert y[idx].min() == y.min() and y[idx].max() == y.max()
    if len(y) <= budget:
        assert len(idx) == len(y)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=2000), st.integers(4, 100))
def test_lttb_keeps_ends_within_budget(values: list[float], budget: int) -> None:
    y = np.array(values)
    x = np.arange(len(y), dtype=float)
    idx = lttb_indices(np, x, y, budget)
    assert len(idx) <= budget and idx[0] == 0 and idx[-1] == len(y) - 1
    assert list(idx) == sorted(set(idx.tolist()))


@given(st.integers(0, 5000), st.integers(1, 300))
def test_sample_is_fixed_sorted_and_within_budget(n: int, budget: int) -> None:
    idx = sample_indices(np, n, budget)
    assert len(idx) == min(n, budget) and list(idx) == sorted(set(idx.tolist()))
    assert (idx == sample_indices(np, n, budget)).all()


def test_downsampling_rejects_a_budget_below_four() -> None:
    with pytest.raises(ValidationError, match="max_points must be an integer >= 4"):
        minmax_indices(np, np.zeros(10), 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.one_of(
    finite_floats, st.sampled_from([math.inf, -math.inf, math.nan]))), min_size=1, max_size=60))
def test_group_stats_match_the_statistics_module(rows: list[tuple[int, float]]) -> None:
    codes = np.array([g for g, _ in rows])
    values = np.array([v for _, v in rows])
    stats = group_stats(np, codes, values, 5)
    for g in range(5):
        mine = [v for c, v in rows if c == g]
        finite = [v for v in mine if math.isfinite(v)]
        assert stats.n[g] == len(mine) and stats.n_finite[g] == len(finite)
        if finite:
            assert stats.mean[g] == pytest.approx(statistics.fmean(finite), rel=1e-9, abs=1e-6)
        else:
            assert math.isnan(stats.mean[g])
        if len(finite) > 1:
            assert stats.std[g] == pytest.approx(statistics.stdev(finite), rel=1e-6, abs=1e-6)
        else:
            assert math.isnan(stats.std[g])
