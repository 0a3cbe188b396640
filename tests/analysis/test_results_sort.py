"""Results.sort_by / head / best, and metric_series over several runs as a tidy table."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from analysis_support import EXP, make_record

from metalab import load_results
from metalab._errors import QueryError, UnknownFieldError, ValidationError
from metalab.model import Status
from metalab.store import Store


@pytest.fixture
def losses(file_store: Callable[[str], Store]) -> Store:
    """Runs whose loss is finite, infinite, NaN or missing (ids in no order of the values)."""
    store = file_store(EXP)
    values: dict[str, Any] = {
        "r_three": 3.0, "r_nan": math.nan, "r_ninf": -math.inf, "r_pinf": math.inf,
        "r_one": 1.0, "r_none": None, "r_onebis": 1.0,
    }
    for minute, (rid, loss) in enumerate(values.items()):
        metrics = {} if loss is None else {"loss": loss}
        store.put_run_record(make_record(rid, params={"lr": minute / 10, "opt": "sgd"},
                                         metrics=metrics, minute=minute))
    return store


def test_sort_by_metric_orders_non_finite_values_and_puts_missing_last(losses: Store) -> None:
    results = load_results(losses)
    up = results.sort_by("metrics.loss")
    assert up.run_ids == ["r_ninf", "r_one", "r_onebis", "r_three", "r_pinf", "r_nan", "r_none"]
    down = results.sort_by("metrics.loss", descending=True)
    # descending reverses the values; NaN (above +inf) first, the run without a value stays last
    assert down.run_ids == ["r_nan", "r_pinf", "r_three", "r_one", "r_onebis", "r_ninf", "r_none"]
    # a new Results: the original order is unchanged
    assert results.run_ids[0] == "r_three"


def test_sort_by_several_fields_and_aliases(sweep: Store) -> None:
    results = load_results(sweep)
    ordered = results.sort_by(["params.b", "params.a"], descending=[False, True])
    assert [(r.params["b"], r.params["a"]) for r in ordered] == [
        ("x", 3), ("x", 2), ("x", 1), ("y", 3), ("y", 2), ("y", 1)]
    assert results.sort_by("param.a").run_ids == results.sort_by(["params.a"]).run_ids
    by_status = results.sort_by("status")
    assert by_status[0].status is Status.FAILED


def test_sort_by_rejects_bad_fields(sweep: Store) -> None:
    results = load_results(sweep)
    with pytest.raises(UnknownFieldError, match=r"metrics\.loss"):
        results.sort_by("metrics.los")
    with pytest.raises(QueryError, match="cannot order by 'tags'"):
        results.sort_by("tags")
    with pytest.raises(ValidationError, match="one bool per field"):
        results.sort_by(["params.a", "params.b"], descending=[True])
    with pytest.raises(ValidationError, match="at least one field"):
        results.sort_by([])


def test_head_cuts_and_checks_n(losses: Store) -> None:
    results = load_results(losses)
    top = results.sort_by("metrics.loss").head(2)
    assert top.run_ids == ["r_ninf", "r_one"]
    assert len(results.head(100)) == len(results) and len(results.head(0)) == 0
    assert results.head().run_ids == results.run_ids[:5]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValidationError, match="head"):
            results.head(bad)  # type: ignore[arg-type]


def test_best_picks_finite_values_with_deterministic_ties(losses: Store) -> None:
    results = load_results(losses)
    best = results.best("loss")
    # -inf and NaN do not compete; r_one and r_onebis tie: the smaller run id wins
    assert best.run_id == "r_one"
    assert results.best("metrics.loss", mode="max").run_id == "r_three"
    assert results.where("params.lr >= 0.1").best("loss").run_id == "r_one"


def test_best_compares_large_integers_exactly(file_store: Callable[[str], Store]) -> None:
    """Counts above 2^53 differ by one: as floats they would tie (and the run id decide)."""
    store = file_store(EXP)
    big = 2**60
    for minute, (rid, steps) in enumerate({"a_more": big + 1, "b_less": big, "c_float": 0.5,
                                           "d_huge": 2**63 - 1}.items()):
        store.put_run_record(make_record(rid, params={"i": minute}, metrics={"steps": steps},
                                         minute=minute))
    results = load_results(store)
    assert results.best("steps", mode="max").run_id == "d_huge"
    assert results.subset(["a_more", "b_less"]).best("steps").run_id == "b_less"
    assert results.subset(["a_more", "b_less"]).best("steps", mode="max").run_id == "a_more"
    assert results.best("steps").run_id == "c_float"


def test_best_errors_say_what_is_wrong(losses: Store) -> None:
    results = load_results(losses)
    with pytest.raises(UnknownFieldError, match=r"metrics\.loss"):
        results.best("los")
    with pytest.raises(ValidationError, match="mode='min' or mode='max'"):
        results.best("loss", mode="lowest")
    only_bad = results.subset(["r_nan", "r_pinf", "r_none"])
    with pytest.raises(ValidationError, match="none of the 3 runs has a finite value"):
        only_bad.best("loss")
    with pytest.raises(ValidationError, match="no runs"):
        results.subset([]).best("loss")


def test_best_on_a_derived_metric(sweep: Store) -> None:
    results = load_results(sweep).successful
    results.compute_derived(lambda run: {"twice": 2 * run.metrics["acc"]})
    assert results.best("derived.twice", mode="max").params["a"] == 3


def test_metric_series_of_several_runs_joins_the_params(file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    for i, lr in enumerate((0.1, 0.01)):
        rid = f"run{i}"
        params: dict[str, Any] = {"lr": lr, "layers": [i, i]}
        if i == 1:
            params["extra"] = "only-here"
        store.put_run_record(make_record(rid, params=params, series=("loss",), minute=i))
        store.put_data(rid, "loss", {"kind": "series",
                                     "data": {"step": [0, 5], "value": [1.0 + i, "NaN"]}})
    store.put_run_record(make_record("run_without", params={"lr": 1.0}, minute=5))
    table = load_results(store).metric_series("loss")
    assert list(table.columns) == ["run_id", "experiment_id", "params.layers", "params.lr",
                                   "params.extra", "name", "step", "value"]
    assert len(table) == 4  # two runs x two steps; the run without a series is left out
    assert list(table["params.lr"]) == [0.1, 0.1, 0.01, 0.01]
    assert list(table["params.layers"])[2] == [1, 1]
    assert list(table["params.extra"].isna()) == [True, True, False, False]
    assert list(table["step"]) == [0, 5, 0, 5] and math.isnan(table["value"].iloc[1])
    # the usual analysis in one line, no merge with to_dataframe()
    last = table[table.step == 5].groupby("params.lr")["value"].size()
    assert dict(last) == {0.01: 1, 0.1: 1}
