"""Non-finite metrics through a PostgresStore: indexed (JSONB holds strict JSON), loaded
as floats from the index's columns, found by queries in SQL."""

from __future__ import annotations

import math
from typing import Any

import metalab
from metalab import load_results
from metalab.analysis import Run
from metalab.store import FileStoreConfig, PostgresStoreConfig

VALUES = {"pinf": math.inf, "ninf": -math.inf, "nan": math.nan, "one": 1.5}


def _op(params: dict[str, Any], capture: Any) -> None:
    capture.metric("x", VALUES[params["which"]])
    capture.metric("loss", math.nan, step=0)


def _derived(run: Run) -> dict[str, Any]:
    return {"d": run.metrics["x"] * 2}


def test_non_finite_metrics_round_trip_through_the_index(collection: PostgresStoreConfig,
                                                        file_root: Any, monkeypatch: Any) -> None:
    from metalab.store._index import _pgcache

    monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 3600.0)  # (no answer kept yet)
    exp = metalab.Experiment(name="nf", version="1", context={}, operation=_op,
                             params=metalab.grid(which=list(VALUES)), seeds=metalab.seeds(0))
    metalab.run(exp, store=collection, derived_metrics=[_derived]).result()
    scoped = collection.scoped("nf:1")
    with scoped.connect() as pg:
        assert pg.flush()
        assert pg._index_current("nf:1")
        results = load_results(pg)
        assert pg._index.last_table_source == "query"  # (from the index's columns)
        df = results.to_dataframe().set_index("params.which")
        monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 0.0)  # (kept, then answered from it)
        load_results(pg)
        cached = load_results(pg).to_dataframe().set_index("params.which")
        assert pg._index.last_table_source == "cache"
        assert str(cached["x"].dtype) == "float64" and cached["x"].equals(df["x"])
        assert str(df["x"].dtype) == "float64"
        assert df.loc["pinf", "x"] == math.inf and df.loc["ninf", "x"] == -math.inf
        assert math.isnan(df.loc["nan", "x"]) and df.loc["one", "x"] == 1.5
        assert str(df["derived.d"].dtype) == "float64" and df.loc["ninf", "derived.d"] == -math.inf
        runs = {r.params["which"]: r for r in results}
        assert runs["pinf"].metrics["x"] == math.inf and math.isnan(runs["nan"].metrics["x"])
        assert runs["pinf"].record.metrics["x"] == math.inf
        assert math.isnan(runs["nan"].metric_series("loss")[0][1])

        def which(query: str) -> list[str]:
            found = load_results(pg, where=query)
            assert pg._index.last_table_source == "query"
            return sorted(r.params["which"] for r in found)

        assert which("metrics.x > 1e308") == ["pinf"]
        assert which("metrics.x < 0") == ["ninf"]
        assert which("metrics.x is not null") == sorted(VALUES)
        assert which("derived.d > 1e308") == ["pinf"]
        got = pg.query_runs(where="metrics.x != 1.5", columns=["metrics.x"])
        assert sorted(d["metrics"]["x"] for d in got) == ["-Infinity", "Infinity", "NaN"]
        types = {(r["namespace"], r["name"]): r["type"] for r in pg.field_catalog("nf:1")}
        assert types[("metrics", "x")] == "number" and types[("derived", "d")] == "number"
    # the same answers from the files
    files = load_results(FileStoreConfig(root=str(file_root), experiment_id="nf:1"))
    assert files.to_dataframe().set_index("params.which")["x"].equals(df["x"])


def test_answers_without_non_finite_texts_are_marked(collection: PostgresStoreConfig) -> None:
    """The index's load answer says when no value is such a text (nothing to convert)."""
    from metalab.store._index._pgquery import table_runs

    exp = metalab.Experiment(name="fin", version="1", context={}, operation=_op,
                             params=metalab.grid(which=["one"]), seeds=metalab.seeds(0))
    metalab.run(exp, store=collection).result()
    with collection.scoped("fin:1").connect() as pg:
        assert pg.flush()
        answer = table_runs(pg, None, None)
        assert answer is not None and answer["number_texts"] is False
        assert answer["fields"][("metrics", "x")] == [1.5]
