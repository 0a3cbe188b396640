"""Histogram pushdown on the FileStore catalog: the bins computed in SQLite equal,
float for float, the histogram ``plot_figure`` draws from the loaded runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from histogram_support import SPECS, check_tricky, fill_tricky

from metalab import ValidationError, load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure
from metalab.store import FileStore, FileStoreConfig
from metalab.testing import make_record

EXP = "exp:hist"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    assert isinstance(fs, FileStore)
    fill_tricky(fs, EXP)
    return fs


def test_pushed_histograms_equal_those_of_loaded_runs(store: FileStore) -> None:
    assert check_tricky(store, store) > 5 * len(SPECS)


def test_the_range_and_counts_come_from_the_index(store: FileStore) -> None:
    seen: list[list[dict[str, object]]] = []

    def edges(groups: list[dict[str, object]]) -> list[float]:
        seen.append([dict(g) for g in groups])
        return [0.0, 30.0, 57.0]

    groups = store.histogram_runs(None, "params.case = 'int'", value="metrics.v", edges=edges)
    assert groups is not None and len(groups) == 1
    (g,) = groups
    assert (g["n"], g["missing"], g["finite"], g["min"], g["max"]) == (40, 3, 37, 0.0, 57.0)
    assert g["counts"] == [sum(1 for j in range(40) if j % 13 != 5 and 3 * (j % 20) < 30),
                           sum(1 for j in range(40) if j % 13 != 5 and 3 * (j % 20) >= 30)]
    assert seen == [[{k: v for k, v in g.items() if k != "counts"}]]
    nonfinite = store.histogram_runs(None, "params.case = 'nonfinite'", value="metrics.v",
                                     edges=lambda groups: None)
    assert nonfinite is not None
    (g,) = nonfinite
    assert (g["nan"], g["posinf"], g["neginf"], g["finite"], g["other"]) == (13, 12, 12, 0, 0)
    with pytest.raises(ValidationError, match="do not span"):
        store.histogram_runs(None, "params.case = 'int'", value="metrics.v",
                             edges=lambda groups: [1.0, 2.0])


def test_values_a_few_ulps_apart_are_binned_as_numpy_bins_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edges a few ulps apart: a bucket by arithmetic straddles an edge and is split
    by comparing its values with the edges (as numpy.histogram compares them)."""
    from metalab.store._index import _histogram

    split = []
    original = _histogram._split_buckets
    monkeypatch.setattr(_histogram, "_split_buckets",
                        lambda *a: (split.append(1), original(*a))[1])
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    for i in range(300):
        fs.put_run_record(make_record(f"r{i:04d}", EXP, params={"g": i % 3},
                                      metrics={"v": 1e9 + (i % 37) * 2.0**-22}))
    for bins in (7, 20, 50, 70):
        spec = PlotSpec("histogram", "metrics.v", group="params.g", bins=bins)
        pushed = pushed_figure(fs, None, None, spec)
        assert pushed is not None
        assert pushed == plot_figure(load_results(fs, columns=spec.fields()), spec)
        assert sum(sum(t["y"]) for t in pushed["data"]) == 300
    assert split
    too_many = PlotSpec("histogram", "metrics.v", bins=100)  # (edges round onto each other)
    assert pushed_figure(fs, None, None, too_many) is None
    with pytest.raises(ValidationError, match="use fewer bins"):
        plot_figure(load_results(fs, columns=too_many.fields()), too_many)


def test_derived_values_are_binned_as_loaded(tmp_path: Path) -> None:
    fs = FileStoreConfig(root=str(tmp_path / "data"), experiment_id=EXP).connect()
    for i in range(90):
        fs.put_run_record(make_record(f"r{i:04d}", EXP, params={"k": i % 4},
                                      metrics={"m": i * 0.25}))
        if i % 3:
            fs.put_derived(f"r{i:04d}", {"z": (i % 7) * 1.5, "tag": ["p", "q"][i % 2]})
    for spec, where in ((PlotSpec("histogram", "derived.z", group="derived.tag", bins=6), None),
                        (PlotSpec("histogram", "metrics.m", group="params.k"), "derived.z > 2")):
        pushed = pushed_figure(fs, None, where, spec)
        assert pushed is not None
        assert pushed == plot_figure(load_results(fs, where=where, columns=spec.fields()), spec)
