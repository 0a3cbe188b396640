"""Charts of runs: PlotSpec, plot_figure, replicate_table, series_figure, notebook views.

The statistics are checked against the standard library (statistics.mean /
stdev) and a t quantile found by integrating Student's density, not against
the code under test.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import pytest
from analysis_support import EXP, make_record

from metalab import MetalabError, ValidationError, load_results
from metalab.analysis import (
    PlotSpec,
    Results,
    plot_figure,
    plotly_js_path,
    replicate_table,
    series_figure,
)
from metalab.analysis._plots_stats import t_quantile_975
from metalab.store import Store

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _fill(store: Store, *, seeds: int = 4, extra: Callable[[int, dict[str, Any]], None] | None = None
          ) -> dict[tuple[float, str], list[float]]:
    """lr in 3 values x model in 2 x ``seeds`` replicates; returns the losses per case."""
    cases: dict[tuple[float, str], list[float]] = {}
    i = 0
    for lr in (0.1, 0.01, 0.001):
        for model in ("cnn", "vit"):
            for seed in range(seeds):
                loss = lr * 10 + seed * 0.25 + (0.5 if model == "vit" else 0.0)
                metrics: dict[str, Any] = {"loss": loss, "acc": 1 - loss / 10}
                if extra is not None:
                    extra(i, metrics)
                store.put_run_record(make_record(
                    f"r{i:03d}", params={"lr": lr, "model": model}, metrics=metrics, minute=i))
                cases.setdefault((lr, model), []).append(metrics.get("loss", math.nan))
                i += 1
    return cases


@pytest.fixture
def sweep_results(file_store: Callable[[str], Store]) -> tuple[Results, dict[Any, list[float]]]:
    store = file_store(EXP)
    cases = _fill(store)
    return load_results(store), cases


def _t975(df: int) -> float:
    """The 0.975 quantile of Student's t by bisection on its CDF (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf_mass(q: float) -> float:  # P(-q < T < q)
        steps = 4000
        h = 2 * q / steps
        total = 0.0
        for k in range(steps + 1):
            t = -q + k * h
            w = 1 if k in (0, steps) else (4 if k % 2 else 2)
            total += w * c * (1 + t * t / df) ** (-(df + 1) / 2)
        return total * h / 3

    lo, hi = 0.0, 60.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf_mass(mid) < 0.95 else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 29, 30, 31, 45, 200])
def test_t_quantile_matches_the_integrated_t_distribution(df: int) -> None:
    assert t_quantile_975(df) == pytest.approx(_t975(df), rel=2e-5)


# ---------------------------------------------------------------- the spec
def test_spec_from_query_parses_and_round_trips() -> None:
    spec = PlotSpec.from_query({"kind": "line", "x": "param.lr", "y": "metrics.loss",
                                "group": "params.model", "over_seeds": "no", "band": "sem",
                                "bins": "20", "max_points": "100"})
    assert spec == PlotSpec("line", "params.lr", "metrics.loss", "params.model", False, "sem",
                            20, 100)
    assert PlotSpec.from_query(spec.to_query()) == spec
    assert spec.fields() == ["params.lr", "metrics.loss", "params.model"]
    assert PlotSpec.from_query({"kind": "bar", "x": "params.model"}).to_query() == {
        "kind": "bar", "x": "params.model"}
    assert PlotSpec.from_query({"kind": "histogram", "x": "metrics.loss", "band": "none",
                                "where": "status = 'success'"}, ignore=["where"]).band is None


@pytest.mark.parametrize(("query", "words"), [
    ({"kind": "pie", "x": "params.a"}, ["kind='pie'", "scatter, line, bar, histogram"]),
    ({"kind": "line", "x": "params.a"}, ["needs both x and y"]),
    ({"kind": "scatter", "x": "params.a", "y": "nope"}, ["y='nope'", "params.<name>"]),
    ({"kind": "bar", "x": "params.a", "band": "iqr"}, ["band='iqr'", "std, sem, ci95"]),
    ({"kind": "bar", "x": "params.a", "bins": "many"}, ["bins='many'", "integer from 1"]),
    ({"kind": "bar", "x": "params.a", "max_points": "5"}, ["max_points=5", "from 10"]),
    ({"kind": "bar", "x": "params.a", "over_seeds": "maybe"}, ["over_seeds='maybe'", "true or"]),
    ({"kind": "bar", "x": "params.a", "colour": "red"}, ["'colour'", "kind, x, y, group"]),
    ({"kind": "bar", "x": "run_id"}, ["x='run_id' cannot be plotted"]),
])
def test_spec_rejects_bad_settings_naming_key_and_choices(query: dict[str, str],
                                                          words: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        PlotSpec.from_query(query)
    for word in words:
        assert word in str(err.value)


# ------------------------------------------------------------- aggregation
def test_line_over_seeds_is_mean_and_t_interval_per_x_and_group(sweep_results: Any) -> None:
    results, cases = sweep_results
    fig = plot_figure(results, PlotSpec("line", "params.lr", "metrics.loss", "params.model"))
    json.dumps(fig, allow_nan=False)  # plain JSON
    go.Figure(fig)  # a valid plotly figure
    lines = [t for t in fig["data"] if t.get("fill") is None]
    bands = [t for t in fig["data"] if t.get("fill") == "toself"]
    assert [t["name"] for t in lines] == ["cnn", "vit"] and len(bands) == 2
    for trace, model in zip(lines, ("cnn", "vit"), strict=True):
        assert trace["x"] == [0.001, 0.01, 0.1]
        for x, y, custom in zip(trace["x"], trace["y"], trace["customdata"], strict=True):
            losses = cases[(x, model)]
            assert y == pytest.approx(statistics.mean(losses))
            assert custom[0] == len(losses) == 4
    band = bands[0]
    half = _t975(3) * statistics.stdev(cases[(0.001, "cnn")]) / 2
    assert band["y"][0] == pytest.approx(statistics.mean(cases[(0.001, "cnn")]) + half, rel=1e-4)
    meta = fig["layout"]["meta"]["metalab"]
    assert meta["runs"] == 24 and meta["points"] == 6 and meta["excluded"] == {}


@pytest.mark.parametrize("band", ["std", "sem"])
def test_scatter_over_seeds_error_bars(sweep_results: Any, band: str) -> None:
    results, cases = sweep_results
    fig = plot_figure(results, PlotSpec("scatter", "params.lr", "metrics.loss", band=band))
    (trace,) = fig["data"]
    losses = cases[(0.01, "cnn")] + cases[(0.01, "vit")]
    sd = statistics.stdev(losses)
    expected = sd if band == "std" else sd / math.sqrt(len(losses))
    assert trace["error_y"]["array"][1] == pytest.approx(expected)
    assert trace["y"][1] == pytest.approx(statistics.mean(losses))


def test_non_finite_values_are_left_out_and_counted_never_zero(
        file_store: Callable[[str], Store]) -> None:
    def poison(i: int, metrics: dict[str, Any]) -> None:
        if i == 0:
            metrics["loss"] = math.inf
        if i == 1:
            metrics["loss"] = math.nan
        if i == 2:
            del metrics["loss"]

    store = file_store(EXP)
    cases = _fill(store, extra=poison)
    results = load_results(store)
    fig = plot_figure(results, PlotSpec("line", "params.lr", "metrics.loss", "params.model"))
    cnn = next(t for t in fig["data"] if t.get("name") == "cnn" and t.get("fill") is None)
    assert cnn["x"][-1] == 0.1
    finite = cases[(0.1, "cnn")][3:]
    assert cnn["y"][-1] == pytest.approx(statistics.mean(finite))  # not diluted by zeros
    assert cnn["customdata"][-1] == [1, 2]  # one value used, inf and NaN left out
    meta = fig["layout"]["meta"]["metalab"]
    assert meta["excluded"] == {"metrics.loss = inf or NaN": 2, "no metrics.loss": 1}
    note = fig["layout"]["annotations"][0]["text"]
    assert "2 metrics.loss = inf or NaN" in note and "1 no metrics.loss" in note
    assert "point(s) with one run" in note
    # raw points and histograms count each kind apart
    raw = plot_figure(results, PlotSpec("scatter", "params.lr", "metrics.loss", over_seeds=False))
    assert raw["layout"]["meta"]["metalab"]["excluded"] == {
        "metrics.loss = NaN": 1, "metrics.loss = inf": 1, "no metrics.loss": 1}
    assert sum(len(t["y"]) for t in raw["data"]) == 21
    hist = plot_figure(results, PlotSpec("histogram", "metrics.loss", bins=7))
    assert sum(hist["data"][0]["y"]) == 21 and len(hist["data"][0]["y"]) == 7
    json.dumps(hist, allow_nan=False)


def test_large_scatter_is_sampled_deterministically_with_webgl(
        file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    for i in range(1500):
        store.put_run_record(make_record(f"r{i:05d}", params={"p": i * 0.5},
                                         metrics={"m": (i * 7919) % 1000 / 10}, minute=i))
    results = load_results(store)
    spec = PlotSpec("scatter", "params.p", "metrics.m", over_seeds=False, max_points=1200)
    fig = plot_figure(results, spec)
    (trace,) = fig["data"]
    assert trace["type"] == "scattergl" and len(trace["x"]) == 1200
    assert plot_figure(results, spec) == fig  # the same sample every time
    truth = {r.run_id: (r.params["p"], r.metrics["m"]) for r in results}
    assert all(truth[rid] == (x, y) for rid, x, y in
               zip(trace["customdata"], trace["x"], trace["y"], strict=True))
    assert "1200 of 1500 runs shown" in fig["layout"]["annotations"][0]["text"]
    agg = plot_figure(results, PlotSpec("line", "params.p", "metrics.m", max_points=100))
    points = sum(len(t["x"]) for t in agg["data"] if t.get("fill") is None)
    assert points <= 100 and agg["data"][-1]["x"][0] == 0.0 and agg["data"][-1]["x"][-1] == 749.5


def test_many_groups_stay_within_max_points(file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    for i in range(400):
        store.put_run_record(make_record(f"r{i:04d}", params={"x": i % 40, "g": i % 30},
                                         metrics={"m": float(i)}, minute=i))
    results = load_results(store)
    for kind in ("line", "scatter", "bar"):
        fig = plot_figure(results, PlotSpec(kind, "params.x", "metrics.m", "params.g",
                                            max_points=25))
        assert sum(len(t["x"]) for t in fig["data"]) <= 25  # (a line's band included)
        assert fig["layout"]["meta"]["metalab"]["points"] <= 25


def test_bars_and_histograms(sweep_results: Any) -> None:
    results, cases = sweep_results
    counts = plot_figure(results, PlotSpec("bar", "params.model"))
    assert counts["data"][0]["x"] == ["cnn", "vit"] and counts["data"][0]["y"] == [12, 12]
    means = plot_figure(results, PlotSpec("bar", "params.model", "metrics.loss",
                                          group="params.lr"))
    assert [t["name"] for t in means["data"]] == ["0.001", "0.01", "0.1"]
    assert means["data"][2]["y"][1] == pytest.approx(statistics.mean(cases[(0.1, "vit")]))
    assert means["layout"]["barmode"] == "group"
    cats = plot_figure(results, PlotSpec("histogram", "params.model"))
    assert cats["data"][0]["x"] == ["cnn", "vit"] and cats["data"][0]["y"] == [12, 12]
    grouped = plot_figure(results, PlotSpec("histogram", "metrics.loss", group="params.model",
                                            bins=4))
    assert [sum(t["y"]) for t in grouped["data"]] == [12, 12]
    assert grouped["data"][0]["x"] == grouped["data"][1]["x"]  # the same bins for every group


def test_user_strings_are_escaped_in_figures(file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    evil = "<script>alert(1)</script>"
    for i in range(4):
        store.put_run_record(make_record(f"r{i}", params={"name": evil if i % 2 else "ok"},
                                         metrics={"m": float(i)}, minute=i))
    results = load_results(store)
    fig = plot_figure(results, PlotSpec("bar", "params.name", "metrics.m", group="params.name"))
    text = json.dumps(fig)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_bad_fields_raise_clear_errors(sweep_results: Any) -> None:
    results, _ = sweep_results
    with pytest.raises(ValidationError, match=r"no run has the y field 'metrics\.los'.*"
                                              r"Did you mean 'metrics\.loss'"):
        plot_figure(results, PlotSpec("line", "params.lr", "metrics.los"))
    with pytest.raises(ValidationError, match="holds no numbers"):
        plot_figure(results, PlotSpec("line", "params.lr", "params.model"))


def test_projected_load_gives_the_same_figure(sweep_results: Any, root: Any) -> None:
    results, _ = sweep_results
    spec = PlotSpec("line", "params.lr", "metrics.loss", "params.model")
    narrow = load_results(str(root), EXP, columns=spec.fields())
    assert plot_figure(narrow, spec) == plot_figure(results, spec)


def test_empty_results_give_an_empty_figure(file_store: Callable[[str], Store]) -> None:
    fig = plot_figure(load_results(file_store(EXP)), PlotSpec("line", "params.a", "metrics.b"))
    assert fig["data"] == [] and "no runs" in fig["layout"]["annotations"][0]["text"]


# --------------------------------------------------------- replicate table
def test_replicate_table_one_row_per_case(file_store: Callable[[str], Store]) -> None:
    def poison(i: int, metrics: dict[str, Any]) -> None:
        if i == 0:
            metrics["loss"] = math.nan

    store = file_store(EXP)
    cases = _fill(store, extra=poison)
    table = replicate_table(load_results(store), ["metrics.loss", "metrics.acc"], "ci95")
    assert table["columns"] == ["params.lr", "params.model", "n", "metrics.loss.mean",
                                "metrics.loss.ci95", "metrics.loss.n", "metrics.acc.mean",
                                "metrics.acc.ci95", "metrics.acc.n"]
    assert [row[:2] for row in table["rows"]] == [
        [0.001, "cnn"], [0.001, "vit"], [0.01, "cnn"], [0.01, "vit"], [0.1, "cnn"], [0.1, "vit"]]
    for row in table["rows"]:
        losses = [v for v in cases[(row[0], row[1])] if math.isfinite(v)]
        assert row[2] == 4 and row[5] == len(losses)
        assert row[3] == pytest.approx(statistics.mean(losses))
        sem = statistics.stdev(losses) / math.sqrt(len(losses))
        assert row[4] == pytest.approx(_t975(len(losses) - 1) * sem, rel=1e-4)
    json.dumps(table, allow_nan=False)
    with pytest.raises(ValidationError, match="band='mad'"):
        replicate_table(load_results(store), ["metrics.loss"], "mad")


def test_replicate_table_of_a_projected_load(sweep_results: Any, root: Any) -> None:
    results, _ = sweep_results
    narrow = load_results(str(root), EXP, columns=["params", "metrics.loss"])
    assert replicate_table(narrow, ["metrics.loss"], "sem") == replicate_table(
        results, ["metrics.loss"], "sem")


def test_replicate_table_with_one_run_per_case_has_no_band(
        file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    _fill(store, seeds=1)
    table = replicate_table(load_results(store), ["metrics.loss"], "std")
    assert all(row[2] == 1 and row[4] is None for row in table["rows"])


# --------------------------------------------------------------- series
def test_series_figure_downsamples_and_counts_non_finite() -> None:
    long = [(i, math.sin(i / 50) + (5.0 if i == 12345 else 0.0)) for i in range(20000)]
    fig = series_figure({"run-a": long, "<b>run</b>": [(0, 1.0), (1, math.nan), (2, math.inf)]},
                        max_points=300)
    a, b = fig["data"]
    assert len(a["x"]) <= 300 and a["x"][0] == 0 and a["x"][-1] == 19999
    assert max(a["y"]) == pytest.approx(max(v for _, v in long))  # the spike survives
    assert b["name"] == "&lt;b&gt;run&lt;/b&gt;" and b["y"] == [1.0]
    assert fig["layout"]["meta"]["metalab"]["left_out"] == {"NaN": 1, "inf": 1}
    json.dumps(fig, allow_nan=False)
    y_title = [series_figure(s, **kw)["layout"]["yaxis"]["title"]["text"] for s, kw in (
        ({"run-a": long}, {}), ({"<i>loss</i>": long[:5]}, {}),
        ({"a": long[:5], "b": long[:5]}, {"y_title": "<b>"}), ({"a": [], "b": []}, {}))]
    assert y_title == ["run-a", "&lt;i&gt;loss&lt;/i&gt;", "&lt;b&gt;", "value"]


# --------------------------------------------------------- assets, notebook
def test_plotly_js_ships_in_the_wheel() -> None:
    path = plotly_js_path()
    assert path.name == "plotly.min.js" and path.stat().st_size > 1_000_000


def test_plotly_js_path_without_plotly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(MetalabError, match=r"pip install \"metalab\[ui\]\""):
        plotly_js_path()


def test_results_plot_returns_a_plotly_figure(sweep_results: Any) -> None:
    results, _ = sweep_results
    fig = results.plot("bar", "params.model", "metrics.loss", band="std")
    assert isinstance(fig, go.Figure)
    assert list(fig.to_plotly_json()["data"][0]["x"]) == ["cnn", "vit"]


def test_repr_html_shows_series_and_images_escaped(file_store: Callable[[str], Store]) -> None:
    store = file_store(EXP)
    evil = "<img src=x onerror=alert(1)>"
    store.put_data("r0", "loss", {"kind": "series",
                                  "data": {"step": [0, 1, 2], "value": [3.0, "NaN", 1.0]}})
    desc = store.put_artifact("r0", "plot", PNG, kind="file", format="png")
    fake = store.put_artifact("r0", "fake", b"not a png", kind="file", format="png")
    store.put_run_record(make_record("r0", params={"name": evil}, metrics={"m": 1.0},
                                     series=("loss",), artifacts=(desc, fake)))
    results = load_results(store)
    page = results._repr_html_()
    assert "<svg" in page and "polyline" in page and "1 inf/NaN not drawn" in page
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in page
    assert "image fake: not a png file" in page
    assert evil not in page and html_escaped(evil) in page
    run_page = results[0]._repr_html_()
    assert "<svg" in run_page and "data:image/png;base64," in run_page
    assert evil not in run_page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_plot_runs_charts_a_store_through_its_index(file_store: Callable[[str], Store],
                                                    root: Any, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """``plot_runs(path, ...)`` gives the figure of ``load_results(path).plot(...)``, computed
    in the catalog (the runs are never loaded); a store passed in stays open."""
    from metalab.analysis import _load as load_module
    from metalab.analysis import plot_runs

    store = file_store(EXP)
    _fill(store)
    settings = {"kind": "line", "x": "params.lr", "y": "metrics.loss", "group": "params.model"}
    loaded = load_results(str(root), experiment_id=EXP).plot(**settings).to_plotly_json()

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("plot_runs loaded the runs")

    monkeypatch.setattr(load_module, "load_results", no_load)
    fig = plot_runs(str(root), **settings, experiment_id=EXP)
    assert isinstance(fig, go.Figure)
    pushed = fig.to_plotly_json()
    assert pushed["layout"]["meta"] == loaded["layout"]["meta"]
    assert len(pushed["data"]) == len(loaded["data"]) == 4  # two models: a line and a band each
    for got, want in zip(pushed["data"], loaded["data"], strict=True):
        assert list(got["x"]) == pytest.approx(list(want["x"]))
        assert list(got["y"]) == pytest.approx(list(want["y"]), rel=1e-12)
    filtered = plot_runs(store, **settings, where="params.model = 'cnn'").to_plotly_json()
    assert filtered["layout"]["meta"]["metalab"]["runs"] == 12
    assert len(store.query_runs(EXP, None)) == 24  # (passed in: still open)
    monkeypatch.undo()  # (an unknown field is reported by the loading path)
    with pytest.raises(MetalabError, match=r"params\.nope"):
        plot_runs(store, "line", x="params.nope", y="metrics.loss")
