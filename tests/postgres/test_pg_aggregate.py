"""Aggregation pushdown on PostgreSQL: charts over seeds computed in SQL equal the
charts computed from the loaded runs (of the index and of the files)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from aggregate_support import EVIL, SPECS, WHERES, check_derived, fill, same

from metalab import load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure
from metalab.store import FileStoreConfig, PostgresStore
from metalab.testing import make_record

EXP = "exp:1"


@pytest.fixture
def filled(make_store: Any, file_root: Path) -> tuple[PostgresStore, Any]:
    pg: PostgresStore = make_store(EXP)
    fill(pg, EXP)
    pg.flush()
    return pg, FileStoreConfig(root=str(file_root), experiment_id=EXP).connect()


def _loaded(store: Any, spec: PlotSpec, where: str | None) -> dict[str, Any]:
    return plot_figure(load_results(store, where=where, columns=spec.fields()), spec)


@pytest.mark.parametrize("where", WHERES)
def test_pushed_figures_equal_those_of_loaded_runs(filled: tuple[PostgresStore, Any],
                                                   where: str | None) -> None:
    pg, files = filled
    for spec in SPECS:
        pushed = pushed_figure(pg, None, where, spec)
        assert pushed is not None, spec
        same(pushed, _loaded(files, spec, where), path=str(spec.to_query()))
        same(pushed, _loaded(pg, spec, where), path=str(spec.to_query()))


def test_names_are_bound_parameters_and_scope_is_kept(make_store: Any) -> None:
    collection: PostgresStore = make_store(None)
    fill(collection, EXP, n=60)
    fill(collection, "exp:2", n=90, seed=2)
    collection.flush()
    spec = PlotSpec("bar", f"params.{EVIL}", "metrics.acc", group=f"params.{EVIL}")
    where = 'params."' + EVIL.replace('"', '\\"') + '" >= 1'
    scoped: PostgresStore = make_store(EXP)
    got = pushed_figure(scoped, None, where, spec)
    assert got is not None
    same(got, _loaded(scoped, spec, where))
    assert got["layout"]["meta"]["metalab"]["runs"] == 45  # (i % 4 >= 1 of 60)
    whole = collection.aggregate_runs(None, None, by=["experiment_id"])
    assert whole is not None
    assert {g["keys"][0]: g["n"] for g in whole} == {EXP: 60, "exp:2": 90}
    assert scoped.aggregate_runs("exp:2", None, by=["params.opt"]) == []  # outside its scope
    assert len(load_results(collection)) == 150  # the runs table is still there


def test_var_samp_keeps_the_digits_of_a_small_spread(make_store: Any) -> None:
    import statistics

    pg: PostgresStore = make_store(EXP)
    values: dict[str, list[float]] = {"big": [], "small": []}
    for i in range(80):  # one group near 0 (the shift), one at 1e9: two statements
        case = "big" if i % 2 else "small"
        v = (1e9 if case == "big" else 0.0) + ((i * 7919) % 97) * 1e-4
        values[case].append(v)
        pg.put_run_record(make_record(f"r{i:03d}", EXP, params={"c": case}, metrics={"v": v}))
    pg.flush()
    groups = pg.aggregate_runs(None, None, by=["params.c"], values=["metrics.v"])
    assert groups is not None and len(groups) == 2
    for group in groups:
        (stats,) = group["values"]
        got = values[group["keys"][0]]
        assert stats["finite"] == 40
        assert stats["mean"] == pytest.approx(statistics.fmean(got), rel=1e-15)
        assert (stats["m2"] / 39) ** 0.5 == pytest.approx(statistics.stdev(got), rel=1e-4)
    one = pg.aggregate_runs(None, "params.c = 'big'", by=[], values=["metrics.v"])
    assert one is not None
    (stats,) = one[0]["values"]  # (shifted by one of its values: the one pass is exact)
    assert (stats["m2"] / 39) ** 0.5 == pytest.approx(statistics.stdev(values["big"]),
                                                      rel=1e-6)


def test_derived_values_group_and_aggregate_as_loaded(filled: tuple[PostgresStore, Any]) -> None:
    pg, files = filled
    check_derived(pg, files, pg.flush)


def test_value_names_are_quoted_and_kinds_counted(make_store: Any, file_root: Path) -> None:
    """A value field whose name holds quotes, braces, ``%s`` and a backslash, with
    missing, null, non-finite and text values among the numbers: the same
    groups as the FileStore catalog's (and the SQL still parses)."""
    name = "m'{s}%s\\\"x"
    pg: PostgresStore = make_store(EXP)
    cells: list[Any] = [1.5, 2.5, None, "Infinity", "NaN", "text", True, 4.0, -1e9, 7]
    for i in range(40):
        metrics = {} if i % 11 == 3 else {name: cells[i % len(cells)]}
        pg.put_run_record(make_record(f"r{i:03d}", EXP, params={"c": i % 3}, metrics=metrics))
    pg.flush()
    files = FileStoreConfig(root=str(file_root), experiment_id=EXP).connect()
    field = 'metrics."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for where in (None, "params.c >= 1"):
        got = pg.aggregate_runs(None, where, by=["params.c"], values=[field])
        want = files.aggregate_runs(None, where, by=["params.c"], values=[field])
        assert got is not None and want is not None
        key = lambda g: g["keys"]  # noqa: E731
        assert len(got) == len(want) == (3 if where is None else 2)
        for g, w in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
            assert g["keys"] == w["keys"] and g["n"] == w["n"]
            (gv,), (wv,) = g["values"], w["values"]
            for k in ("missing", "nonfinite", "finite", "other"):
                assert gv[k] == wv[k], (g["keys"], k)
            assert gv["mean"] == pytest.approx(wv["mean"], rel=1e-12)
            assert gv["m2"] == pytest.approx(wv["m2"], rel=1e-9)
    assert len(load_results(pg)) == 40  # the runs table is still there
