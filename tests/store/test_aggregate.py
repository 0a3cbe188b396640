"""Aggregation pushdown on the FileStore catalog: charts over seeds computed in SQLite
equal the charts computed from the loaded runs."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from aggregate_support import EVIL, SPECS, WHERES, check_derived, fill, same

from metalab import MetalabError, ValidationError, load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure, query_figure
from metalab.store import FileStore, FileStoreConfig
from metalab.testing import make_record

EXP = "exp:agg"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    assert isinstance(fs, FileStore)
    fill(fs, EXP)
    return fs


def _loaded(store: Any, spec: PlotSpec, where: str | None) -> dict[str, Any]:
    return plot_figure(load_results(store, where=where, columns=spec.fields()), spec)


@pytest.mark.parametrize("where", WHERES)
def test_pushed_figures_equal_the_figures_of_loaded_runs(store: FileStore,
                                                         where: str | None) -> None:
    for spec in SPECS:
        pushed = pushed_figure(store, None, where, spec)
        assert pushed is not None, spec
        same(pushed, _loaded(store, spec, where), path=str(spec.to_query()))


def test_left_out_runs_are_counted_by_reason(store: FileStore) -> None:
    spec = PlotSpec("line", "params.lr", "metrics.loss", "params.opt")
    meta = pushed_figure(store, None, None, spec)["layout"]["meta"]["metalab"]  # type: ignore[index]
    assert meta["runs"] == 240
    excluded = meta["excluded"]
    assert excluded["no metrics.loss"] == 19  # i % 13 == 0
    assert excluded["no params.lr"] > 0
    assert excluded["metrics.loss = inf or NaN"] > 0
    status = pushed_figure(store, None, None, PlotSpec("bar", "status"))
    assert status is not None
    bars = {x: y for t in status["data"] for x, y in zip(t["x"], t["y"], strict=True)}
    assert bars == {"lost": 1, "success": 239}


def test_a_scoped_store_groups_only_its_experiment(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    mine = FileStoreConfig(root=root, experiment_id=EXP).connect()
    other = FileStoreConfig(root=root, experiment_id="exp:other").connect()
    fill(mine, EXP, n=60)
    fill(other, "exp:other", n=90, seed=2)
    spec = PlotSpec("bar", "params.opt")
    got = pushed_figure(mine, None, None, spec)
    assert got is not None and got["layout"]["meta"]["metalab"]["runs"] == 60
    same(got, _loaded(mine, spec, None))
    collection = FileStoreConfig(root=root).connect()
    assert collection.aggregate_runs(None, None, by=["params.opt"]) is None  # two folders
    groups = collection.aggregate_runs("exp:other", None, by=["params.opt"])
    assert groups is not None and sum(g["n"] for g in groups) == 90


def test_field_names_reach_sql_only_as_columns_or_parameters(store: FileStore) -> None:
    spec = PlotSpec("bar", f"params.{EVIL}", "metrics.acc", group=f"params.{EVIL}")
    where = 'params."' + EVIL.replace('"', '\\"') + '" >= 1'
    got = pushed_figure(store, None, where, spec)
    assert got is not None
    same(got, _loaded(store, spec, where))
    assert len(load_results(store)) == 240  # the runs are all still there


def test_spread_far_below_the_mean_keeps_its_digits(tmp_path: Path) -> None:
    """1e9 + noise in one group and values near 0 in another: the band of each
    equals statistics.stdev of its values (a sum of squares would lose all)."""
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    values: dict[str, list[float]] = {"big": [], "small": []}
    for i in range(60):
        case = "big" if i % 2 else "small"
        v = (1e9 if case == "big" else 0.0) + ((i * 7919) % 97) * 1e-4
        values[case].append(v)
        fs.put_run_record(make_record(f"r{i:03d}", EXP, params={"case": case},
                                      metrics={"v": v}))
    spec = PlotSpec("bar", "params.case", "metrics.v", band="std")
    pushed = pushed_figure(fs, None, None, spec)
    assert pushed is not None
    trace = pushed["data"][0]
    for x, mean, std in zip(trace["x"], trace["y"], trace["error_y"]["array"], strict=True):
        assert math.isclose(mean, statistics.fmean(values[x]), rel_tol=1e-15)
        assert math.isclose(std, statistics.stdev(values[x]), rel_tol=1e-6)
    same(pushed, _loaded(fs, spec, None), rel=1e-6)
    one = fs.aggregate_runs(None, None, by=[], values=["metrics.v"])
    assert one is not None and one[0]["values"][0]["finite"] == 60


def test_charts_the_pushdown_cannot_make_fall_back_to_loaded_runs(store: FileStore) -> None:
    hist = PlotSpec("histogram", "params.opt")  # (of categories)
    assert pushed_figure(store, None, None, hist) is None
    same(query_figure(store, hist), _loaded(store, hist, None))
    raw = PlotSpec("scatter", "params.lr", "metrics.loss", over_seeds=False)
    assert pushed_figure(store, None, None, raw) is None
    missing = PlotSpec("line", "params.lr", "metrics.nope")
    assert pushed_figure(store, None, None, missing) is None
    with pytest.raises(MetalabError, match=r"'metrics\.nope': no run has it"):
        query_figure(store, missing)
    texts = PlotSpec("line", "params.lr", "params.layers")
    with pytest.raises(ValidationError, match="holds no numbers"):
        query_figure(store, texts)


def test_aggregate_runs_is_behind_its_capability_flag(store: FileStore) -> None:
    assert FileStore.supports_aggregate
    groups = store.aggregate_runs(None, "params.lr = 0.1", by=["params.flag"],
                                  values=["metrics.loss", "duration_ms"])
    assert groups is not None
    assert sum(g["n"] for g in groups) == len(load_results(store, where="params.lr = 0.1"))
    for g in groups:
        for v in g["values"]:
            assert v["missing"] + v["nonfinite"] + v["finite"] + v["other"] == g["n"]


def test_derived_values_group_and_aggregate_as_loaded(store: FileStore) -> None:
    check_derived(store, store)


def test_a_boolean_and_the_number_one_are_two_categories(store: FileStore) -> None:
    spec = PlotSpec("bar", "params.mixed")
    loaded = _loaded(store, spec, None)
    assert loaded["data"][0]["x"] == ["True", "1", "2.5", "NaN", "one"]  # (missing: left out)
    same(pushed_figure(store, None, None, spec), loaded)
