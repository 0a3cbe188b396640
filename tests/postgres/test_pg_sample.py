"""Sample pushdown on PostgreSQL: a raw scatter of many runs draws a fixed sample chosen
in SQL and says what the loaded figure (of the files and of the index) says."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from aggregate_support import fill
from sample_support import check_samples

from metalab.analysis import PlotSpec
from metalab.analysis._plots_pushdown import pushed_figure
from metalab.store import FileStoreConfig, PostgresStore

EXP = "exp:1"


def test_pushed_samples_say_what_the_loaded_figure_says(make_store: Any,
                                                       file_root: Path) -> None:
    pg: PostgresStore = make_store(EXP)
    fill(pg, EXP)
    pg.flush()
    check_samples(pg, FileStoreConfig(root=str(file_root), experiment_id=EXP).connect())
    check_samples(pg, pg)


def test_scope_is_kept(make_store: Any) -> None:
    collection: PostgresStore = make_store(None)
    fill(collection, EXP, n=60)
    fill(collection, "exp:2", n=90, seed=2)
    collection.flush()
    scoped: PostgresStore = make_store(EXP)
    spec = PlotSpec("scatter", "metrics.acc", "metrics.loss", over_seeds=False, max_points=10)
    got = pushed_figure(scoped, None, None, spec)
    assert got is not None and got["layout"]["meta"]["metalab"]["runs"] == 60
    assert all(run.startswith("r") for t in got["data"] for run in t["customdata"])
    assert scoped.sample_runs("exp:2", None, x="metrics.acc", y="metrics.loss",
                              limit=10) == {"classes": [], "sample": None}
    whole = collection.sample_runs(None, None, x="metrics.acc", y="metrics.loss", limit=10)
    assert whole is not None and sum(c["n"] for c in whole["classes"]) == 150
