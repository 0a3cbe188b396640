"""Results: ordering, indexing, filtering, tables and DataFrames."""

from __future__ import annotations

import math
import sys
from typing import Any

import pandas as pd
import pytest
from analysis_support import EXP, make_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab._errors import MissingDependencyError, NotFoundError, ValidationError
from metalab.analysis import Results, Run, load_results
from metalab.model import Status


@pytest.fixture
def results(sweep: Any) -> Results:
    return load_results(sweep)


# ----------------------------------------------------------------- collection
def test_order_is_started_at_then_run_id(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("b", minute=5))
    store.put_run_record(make_record("a", minute=5))
    store.put_run_record(make_record("c", minute=1))
    store.put_run_record(make_record("never", minute=None, status="running"))
    assert load_results(store).run_ids == ["c", "a", "b", "never"]
    assert [r.run_id for r in load_results(store)] == ["c", "a", "b", "never"]


def test_indexing(results: Results) -> None:
    assert len(results) == 6
    first = results[0]
    assert isinstance(first, Run) and first.run_id == "run5"  # started first
    assert results[-1].run_id == "run0"
    part = results[1:3]
    assert isinstance(part, Results) and part.run_ids == ["run4", "run3"]
    assert results["run2"].params == {"a": 2, "b": "x"}
    assert "run2" in results and "nope" not in results
    with pytest.raises(NotFoundError, match="did you mean"):
        results["run22"]
    with pytest.raises(IndexError):
        results[6]
    with pytest.raises(TypeError):
        results[1.5]  # type: ignore[call-overload]


def test_status_views(results: Results) -> None:
    assert len(results.successful) == 5
    assert [r.run_id for r in results.failed] == ["run5"]
    assert results.failed[0].status is Status.FAILED
    assert len(results.by_status("failed")) == 1
    assert len(results.by_status([Status.FAILED, "success"])) == 6
    with pytest.raises(ValidationError, match="success"):
        results.by_status("completed")


def test_repr_counts_status_and_experiment(results: Results) -> None:
    text = repr(results)
    assert "6 runs" in text and "5 success" in text and "1 failed" in text and EXP in text


# ------------------------------------------------------------------ filtering
def test_filter_by_param(results: Results) -> None:
    # the reference implementation matched metrics only: params must work
    assert sorted(r.run_id for r in results.filter(a=1)) == ["run0", "run1"]
    assert sorted(r.run_id for r in results.filter(b="y", a=[1, 2])) == ["run1", "run3"]
    assert len(results.filter(**{"params.a": 3})) == 2


def test_filter_by_metric_and_predicate(results: Results) -> None:
    low = results.filter(loss=lambda v: v < 0.6)
    assert sorted(r.run_id for r in low) == ["run2", "run3", "run4"]
    assert len(results.filter(**{"metrics.loss": 1.0})) == 2
    # the failed run has no metrics: it never matches, the predicate is not called on None
    assert "run5" not in results.filter(acc=lambda v: v > 0).run_ids


def test_filter_status_and_tags(results: Results) -> None:
    assert sorted(results.filter("success", tags="odd").run_ids) == ["run0", "run1", "run4"]
    assert results.filter(status=["failed"], tags=["odd"]).run_ids == ["run5"]
    assert len(results.filter(tags=["odd", "even"])) == 0


def test_filter_unknown_field_lists_close_names(results: Results) -> None:
    with pytest.raises(ValidationError, match="Did you mean 'loss'"):
        results.filter(los=1)
    with pytest.raises(ValidationError, match=r"params\.a"):
        results.filter(**{"params.aa": 1})


def test_filter_ambiguous_name_asks_for_a_prefix(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("r", params={"k": 1}, metrics={"k": 2}))
    results = load_results(store)
    with pytest.raises(ValidationError, match=r"params\.k"):
        results.filter(k=1)
    assert len(results.filter(**{"metrics.k": 2})) == 1


def test_filter_does_not_confuse_bools_and_ints(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("t", params={"flag": True}))
    store.put_run_record(make_record("o", params={"flag": 1}))
    results = load_results(store)
    assert results.filter(flag=True).run_ids == ["t"]
    assert results.filter(flag=1).run_ids == ["o"]


def test_filter_returns_shared_view(results: Results) -> None:
    sub = results.filter(a=2)
    assert sub.store is results.store
    assert len(results) == 6  # immutable: the original is unchanged


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["u", "v"])), min_size=1, max_size=8),
       st.integers(0, 3))
def test_filter_matches_a_plain_scan(memory_store: Any, rows: list[Any], target: int) -> None:
    docs = [
        make_record(f"r{i}", params={"x": x}, metrics={"m": m}).to_dict()
        for i, (x, m) in enumerate(rows)
    ]
    results = Results(memory_store, docs)
    expected = sorted(f"r{i}" for i, (x, _) in enumerate(rows) if x == target)
    assert sorted(results.filter(x=target).run_ids) == expected
    assert sorted(results.filter(m=["u"]).run_ids) == sorted(
        f"r{i}" for i, (_, m) in enumerate(rows) if m == "u"
    )


# ------------------------------------------------------------------ dataframe
def test_to_dataframe_columns_and_values(results: Results) -> None:
    df = results.to_dataframe()
    assert list(df.columns[:6]) == [
        "run_id", "experiment_id", "status", "started_at", "finished_at", "duration_ms",
    ]
    assert {"params.a", "params.b", "loss", "acc"} <= set(df.columns)
    assert not any(c.startswith("derived.") for c in df.columns)  # none computed yet
    row = df.set_index("run_id").loc["run2"]
    assert row["params.a"] == 2 and row["params.b"] == "x"
    assert row["loss"] == pytest.approx(0.5)
    assert row["status"] == "success" and row["experiment_id"] == EXP
    assert row["duration_ms"] == 2000.0
    assert str(df["started_at"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(
        df["started_at"].dtype
    )
    assert df.set_index("run_id").loc["run0", "started_at"] == pd.Timestamp(
        "2025-01-01T00:10:00Z"
    )
    failed = df.set_index("run_id").loc["run5"]
    assert math.isnan(failed["loss"])
    assert list(df["run_id"]) == results.run_ids


def test_to_dataframe_include_flags(results: Results) -> None:
    df = results.to_dataframe(include_params=False, include_metrics=False, include_record=False)
    assert list(df.columns) == ["run_id"]
    only_params = results.to_dataframe(include_metrics=False, include_record=False)
    assert list(only_params.columns) == ["run_id", "params.a", "params.b"]


def test_to_dataframe_metric_clashing_with_a_record_column(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("r", metrics={"status": 3, "ok": 1}))
    df = load_results(store).to_dataframe()
    assert df.loc[0, "status"] == "success"
    assert df.loc[0, "metrics.status"] == 3 and df.loc[0, "ok"] == 1


def test_to_dataframe_of_no_runs(file_store: Any) -> None:
    df = load_results(file_store(EXP)).to_dataframe()
    assert len(df) == 0 and "run_id" in df.columns


def test_to_dataframe_reads_derived_only_for_runs_that_have_them(results: Results) -> None:
    store = results.store
    store.put_derived("run3", {"score": 9})
    calls: list[str] = []
    original = type(store).get_derived

    def spy(self: Any, run_id: str) -> Any:
        calls.append(run_id)
        return original(self, run_id)

    type(store).get_derived = spy  # type: ignore[method-assign]
    try:
        df = load_results(store).to_dataframe()
    finally:
        type(store).get_derived = original  # type: ignore[method-assign]
    assert calls == ["run3"]
    assert df.set_index("run_id").loc["run3", "derived.score"] == 9


def test_missing_pandas_names_the_extra(results: Results, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"metalab\[pandas\]"):
        results.to_dataframe()


def test_to_csv_creates_parent_and_writes_atomically(results: Results, tmp_path: Any) -> None:
    target = tmp_path / "out" / "deep" / "results.csv"
    assert results.to_csv(target) == str(target)
    back = pd.read_csv(target)
    assert len(back) == 6 and "params.a" in back.columns
    assert [p.name for p in target.parent.iterdir()] == ["results.csv"]  # no temp file left


# ------------------------------------------------------------------- display
def test_table_shows_params_and_metrics(results: Results) -> None:
    text = results.table(n=3)
    assert "params.a" in text and "loss" in text and "run5" in text
    assert "3 more runs" in text
    assert "run0" not in text


def test_html_repr_escapes_values(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(
        make_record("r", params={"name": "<script>alert(1)</script>"}, metrics={"<b>": 1})
    )
    results = load_results(store)
    for page in (results._repr_html_(), results[0]._repr_html_()):
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert "<b>" not in page
    assert "<script>" in repr(results[0])  # plain repr is plain text


def test_table_without_rich_is_plain_text(results: Results, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setitem(sys.modules, "rich.table", None)
    text = results.table(n=2)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["run_id", "status", "duration_ms", "params.a"]
    assert lines[2].startswith("run5") and "4 more runs" in lines[-1]
