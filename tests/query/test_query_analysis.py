"""Results.where, load_results pushdown, Arrow/polars/Parquet, metric_series, aggregate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from query_support import make_doc, write_doc

from metalab import UnknownFieldError, ValidationError, load_results
from metalab.store import FileStore


def test_where_text_and_keywords_agree(fstore: FileStore) -> None:
    results = load_results(fstore)
    a = results.where("params.lr < 0.05 and tags contains 'even'")
    b = results.where(**{"params.lr": [0.01, 0.001], "tags": "even"})
    assert a.run_ids == b.run_ids == ["r002", "r006", "r010", "r014", "r018"]
    assert a.run_ids == [d["run_id"] for d in fstore.query_runs(
        where="params.lr < 0.05 and tags contains 'even'", order_by="started_at")]
    with pytest.raises(UnknownFieldError):
        results.where("metrics.scor > 1")


def test_where_on_derived_values(fstore: FileStore) -> None:
    fstore.put_derived("r001", {"acc": 0.7})
    results = load_results(fstore)
    assert results.where("derived.acc >= 0.5").run_ids == ["r001"]


def test_load_results_pushes_the_query_down(fstore: FileStore, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """The filter, order and limit reach the catalog (its run table answers as columns)."""
    calls: list[Any] = []
    real = FileStore.run_table

    def spy(self: FileStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(answer := real(self, *args, **kwargs))
        return answer

    monkeypatch.setattr(FileStore, "run_table", spy)
    r = load_results(fstore, where="params.depth >= 3", columns=["params.depth", "metrics.score"],
                     order_by="-metrics.score", limit=3)
    assert calls and calls[0] is not None and calls[0]["n"] == 3
    assert r.run_ids == ["r019", "r018", "r014"]
    df = r.to_dataframe()
    assert list(df["params.depth"]) == [4, 3, 4]
    assert list(df["score"]) == [1.9, 1.8, 1.4]
    kw = load_results(fstore, where={"params.depth": 4}, columns=["params.depth"])
    assert sorted(kw.run_ids) == ["r004", "r009", "r014", "r019"]


def test_projected_derived_values_are_visible(fstore: FileStore) -> None:
    fstore.put_derived("r002", {"acc": 0.25})
    r = load_results(fstore, where="derived.acc > 0", columns=["derived.acc"])
    assert [run.derived for run in r] == [{"acc": 0.25}]


def test_arrow_polars_parquet(fstore: FileStore, tmp_path: Path) -> None:
    import polars as pl
    import pyarrow.parquet as pq

    write_doc(fstore, make_doc(30, params={"depth": "deep", "lr": 1.0, "name": "x"}))
    r = load_results(fstore)
    table = r.to_arrow()
    assert table.num_rows == 21
    assert table.column("params.depth").type == "string"  # mixed ints and a string: JSON text
    assert str(table.column("started_at").type).startswith("timestamp[us")
    df = r.to_polars()
    assert isinstance(df, pl.DataFrame) and df.height == 21 and "score" in df.columns
    path = r.to_parquet(tmp_path / "out" / "runs.parquet")
    back = pq.read_table(path)
    assert back.num_rows == 21 and back.column("run_id").to_pylist() == r.run_ids


def test_metric_series_long_table(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    for i in range(3):
        write_doc(store, make_doc(i, series=["loss"] if i < 2 else []))
        if i < 2:
            store.put_data(f"r{i:03d}", "loss", {"kind": "series",
                                                 "data": {"step": [0, 1, 2],
                                                          "value": [1.0, 0.5, 0.1 * i]}})
    long = load_results(store).metric_series("loss")
    assert list(long.columns) == ["run_id", "experiment_id", "params.depth", "params.lr",
                                  "params.name", "name", "step", "value"]
    assert len(long) == 6
    assert list(long[long.run_id == "r001"]["value"]) == [1.0, 0.5, 0.1]
    with pytest.raises(ValidationError):
        load_results(store).metric_series([])


def test_aggregate_groups_seed_replicates(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "s"), experiment_id="q:1")
    i = 0
    for lr in (0.1, 0.01):
        for seed in range(3):
            write_doc(store, make_doc(i, params={"lr": lr}, metrics={"acc": lr * 10 + seed},
                                      seed={"root_seed": seed}))
            i += 1
    agg = load_results(store).aggregate(by="params", metrics=["acc"],
                                        stats=["mean", "std", "count"])
    assert list(agg.columns) == ["params.lr", "n_runs", "acc_mean", "acc_std", "acc_count"]
    rows = agg.set_index("params.lr")
    assert rows.loc[0.1, "n_runs"] == 3 and rows.loc[0.1, "acc_mean"] == pytest.approx(2.0)
    assert rows.loc[0.01, "acc_mean"] == pytest.approx(1.1)
    assert rows.loc[0.01, "acc_std"] == pytest.approx(1.0)
    with pytest.raises(ValidationError):
        load_results(store).aggregate(stats=["mode"])
    with pytest.raises(ValidationError):
        load_results(store).aggregate(by=["nope"])
