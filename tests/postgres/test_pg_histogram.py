"""Histogram pushdown on PostgreSQL: the bins computed in SQL (``width_bucket``) equal,
float for float, the histogram of the loaded runs (of the files and of the index)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from histogram_support import SPECS, check_tricky, fill_tricky

from metalab import ValidationError, load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure
from metalab.store import FileStoreConfig, PostgresStore
from metalab.testing import make_record

EXP = "exp:1"


@pytest.fixture
def filled(make_store: Any, file_root: Path) -> tuple[PostgresStore, Any]:
    pg: PostgresStore = make_store(EXP)
    fill_tricky(pg, EXP)
    pg.flush()
    return pg, FileStoreConfig(root=str(file_root), experiment_id=EXP).connect()


def test_pushed_histograms_equal_those_of_loaded_runs(
        filled: tuple[PostgresStore, Any]) -> None:
    pg, files = filled
    assert check_tricky(pg, files) > 5 * len(SPECS)
    assert check_tricky(pg, pg) > 5 * len(SPECS)


def test_scope_names_and_edges(make_store: Any) -> None:
    evil = 'x"; drop table runs; --'
    collection: PostgresStore = make_store(None)
    for i in range(50):
        for exp in (EXP, "exp:2"):
            collection.put_run_record(make_record(
                f"{exp[-1]}-{i:03d}", exp, params={evil: i % 4}, metrics={"v": i * 0.5}))
    collection.flush()
    scoped: PostgresStore = make_store(EXP)
    spec = PlotSpec("histogram", "metrics.v", group=f"params.{evil}", bins=9)
    where = 'params."' + evil.replace('"', '\\"') + '" >= 1'
    got = pushed_figure(scoped, None, where, spec)
    assert got is not None and got["layout"]["meta"]["metalab"]["runs"] == 37
    assert got == plot_figure(load_results(scoped, where=where, columns=spec.fields()), spec)
    assert scoped.histogram_runs("exp:2", None, value="metrics.v",
                                 edges=lambda groups: None) == []  # (outside its scope)
    whole = collection.histogram_runs(None, None, value="metrics.v", edges=lambda g: None)
    assert whole is not None and whole[0]["n"] == 100
    with pytest.raises(ValidationError, match="ascending"):
        collection.histogram_runs(None, None, value="metrics.v", edges=lambda g: [3.0, 1.0])
    assert len(load_results(collection)) == 100  # the runs table is still there


def test_values_a_few_ulps_apart(make_store: Any) -> None:
    pg: PostgresStore = make_store(EXP)
    for i in range(300):
        pg.put_run_record(make_record(f"r{i:04d}", EXP, params={"g": i % 3},
                                      metrics={"v": 1e9 + (i % 37) * 2.0**-22}))
    pg.flush()
    for bins in (1, 7, 50, 70):
        spec = PlotSpec("histogram", "metrics.v", group="params.g", bins=bins)
        pushed = pushed_figure(pg, None, None, spec)
        assert pushed is not None
        assert pushed == plot_figure(load_results(pg, columns=spec.fields()), spec)


def test_group_values_jsonb_holds_equal_are_one_group(make_store: Any) -> None:
    """``1`` and ``1.0`` are one jsonb value: the range and the bins statements may each
    show either; the groups still match (no crash) and count every run once."""
    pg: PostgresStore = make_store(EXP)
    for i in range(20):
        pg.put_run_record(make_record(f"r{i:03d}", EXP, params={"g": 1 if i < 10 else 1.0},
                                      metrics={"v": float(i)}))
    pg.flush()
    groups = pg.histogram_runs(None, None, value="metrics.v", group="params.g",
                               edges=lambda g: [0.0, 10.0, 19.0])
    assert groups is not None and len(groups) == 1
    assert groups[0]["n"] == 20 and groups[0]["counts"] == [10, 10]
    spec = PlotSpec("histogram", "metrics.v", group="params.g", bins=4)
    got = pushed_figure(pg, None, None, spec)
    assert got is not None and got["layout"]["meta"]["metalab"]["runs"] == 20
    assert sum(sum(t["y"]) for t in got["data"]) == 20


def test_range_and_bins_see_the_same_runs(make_store: Any) -> None:
    """A run written between the range statement and the bins statement (here: from the
    edges callback, as a concurrent writer would) is in neither."""
    pg: PostgresStore = make_store(EXP)
    for i in range(5):
        pg.put_run_record(make_record(f"r{i:03d}", EXP, params={"g": 1}, metrics={"v": float(i)}))
    pg.flush()
    writer: PostgresStore = make_store(EXP)

    def edges(groups: list[dict[str, Any]]) -> list[float]:
        writer.put_run_record(make_record("late", EXP, params={"g": 2}, metrics={"v": 1e6}))
        writer.put_run_record(make_record("late2", EXP, params={"g": 1}, metrics={"v": 1e6}))
        assert writer.flush()
        return [0.0, 2.0, 4.0]

    groups = pg.histogram_runs(None, None, value="metrics.v", group="params.g", edges=edges)
    assert groups is not None
    assert [(g["key"], g["n"], g["finite"], g["counts"]) for g in groups] == [(1, 5, 5, [2, 3])]
    assert len(load_results(pg)) == 7  # (both were written)
