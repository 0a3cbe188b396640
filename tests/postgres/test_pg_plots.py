"""Charts from the PostgreSQL index's columns equal the charts from the files."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metalab import load_results
from metalab.analysis import PlotSpec, plot_figure, replicate_table
from metalab.store import FileStoreConfig, PostgresStore
from metalab.testing import make_record

EXP = "exp:1"
SPECS = [
    PlotSpec("line", "params.lr", "metrics.loss", "params.opt"),
    PlotSpec("scatter", "params.lr", "metrics.loss", over_seeds=False),
    PlotSpec("bar", "params.opt", "metrics.loss", band="sem"),
    PlotSpec("histogram", "metrics.loss", group="params.opt", bins=6),
]


def test_figures_and_replicate_tables_from_the_index_equal_those_from_files(
        make_store: Any, file_root: Path) -> None:
    pg: PostgresStore = make_store(EXP)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(60):
        loss: float = 1.0 / (1 + i % 7)
        if i == 4:
            loss = math.inf
        if i == 9:
            loss = math.nan
        pg.put_run_record(make_record(
            f"r{i:03d}", EXP, params={"lr": [0.1, 0.01, 0.001][i % 3], "opt": ["adam", "sgd"][i % 2]},
            metrics={"loss": loss}, seed={"root_seed": i // 6, "replicate_index": i // 6},
            started_at=start + timedelta(seconds=i)))
    pg.flush()
    files = load_results(FileStoreConfig(root=str(file_root), experiment_id=EXP))
    for spec in SPECS:
        from_index = load_results(pg, columns=spec.fields())
        assert from_index._cols is not None  # the columnar answer of the index
        assert plot_figure(from_index, spec) == plot_figure(files, spec)
    whole = load_results(pg)
    assert whole._cols is not None
    table = replicate_table(whole, ["metrics.loss"], "ci95")
    assert table == replicate_table(files, ["metrics.loss"], "ci95")
    narrow = load_results(pg, columns=["params", "metrics.loss"])
    assert narrow._cols is not None
    assert replicate_table(narrow, ["metrics.loss"], "ci95") == table
    assert [row[2] for row in table["rows"]] == [10] * 6
    assert sum(row[-1] for row in table["rows"]) == 58  # inf and NaN left out
