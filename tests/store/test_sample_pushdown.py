"""Sample pushdown on the FileStore catalog: a raw scatter of many runs draws a fixed
sample chosen in SQLite and says what the loaded figure says."""

from __future__ import annotations

from pathlib import Path

from aggregate_support import fill
from sample_support import check_samples

from metalab.analysis import PlotSpec
from metalab.analysis._plots_pushdown import pushed_figure
from metalab.store import FileStoreConfig
from metalab.testing import make_record

EXP = "exp:sample"


def test_pushed_samples_say_what_the_loaded_figure_says(tmp_path: Path) -> None:
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    fill(fs, EXP)
    check_samples(fs, fs)


def test_the_sample_spreads_over_the_runs(tmp_path: Path) -> None:
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    for i in range(2000):
        fs.put_run_record(make_record(f"r{i:05d}", EXP, params={"x": i},
                                      metrics={"y": i * 0.5}))
    spec = PlotSpec("scatter", "params.x", "metrics.y", over_seeds=False, max_points=1200)
    got = pushed_figure(fs, None, None, spec)
    assert got is not None
    (trace,) = got["data"]
    assert trace["type"] == "scattergl"  # (past a thousand points, as loaded)
    xs = sorted(trace["x"])
    assert len(xs) == 1200 and xs[0] < 20 and xs[-1] > 1980
    assert sum(1 for x in xs if x < 1000) in range(500, 700)  # (not the first runs)
    assert got["layout"]["meta"]["metalab"]["notes"] == [
        "1200 of 2000 runs shown (a fixed random sample)"]
