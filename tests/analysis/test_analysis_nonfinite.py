"""Non-finite numbers (inf, -inf, NaN) captured by a run read back as floats, never as null.

The run files stay strict JSON: such a metric, derived value or series point is
stored as the text ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (see
docs/storage.md), and every reader of metalab turns it back into the float.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest

import metalab
from metalab._errors import ValidationError
from metalab.analysis import Run, compute_derived_for_run, load_results
from metalab.model import RunRecord, Status
from metalab.store import FileStoreConfig

VALUES = {"pinf": math.inf, "ninf": -math.inf, "nan": math.nan, "one": 1.5}


def _op(params: dict[str, Any], capture: Any) -> None:
    capture.metric("x", VALUES[params["which"]])
    capture.metric("finite", 2.0)
    for step, value in enumerate((0.5, math.nan, math.inf, -math.inf)):
        capture.metric("loss", value, step=step)


def _derived(run: Run) -> dict[str, Any]:
    return {"d": run.metrics["x"] * 2, "ratio": -math.inf}


@pytest.fixture
def lab(tmp_path: Any) -> str:
    exp = metalab.Experiment(name="nf", version="1", context={}, operation=_op,
                             params=metalab.grid(which=list(VALUES)), seeds=metalab.seeds(0))
    root = str(tmp_path / "lab")
    metalab.run(exp, store=root, derived_metrics=[_derived]).result()
    return root


def _raw_records(root: str) -> dict[str, dict[str, Any]]:
    folder = os.path.join(root, "nf_1", "runs")
    out = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            doc = json.load(fh, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
        out[doc["params"]["which"]] = doc
    return out


def _is(value: Any, expected: float) -> bool:
    if math.isnan(expected):
        return isinstance(value, float) and math.isnan(value)
    return isinstance(value, float) and value == expected


def test_run_files_hold_strict_json_with_the_non_finite_texts(lab: str) -> None:
    docs = _raw_records(lab)
    assert {w: d["status"] for w, d in docs.items()} == dict.fromkeys(VALUES, "success")
    assert docs["pinf"]["metrics"]["x"] == "Infinity"
    assert docs["ninf"]["metrics"]["x"] == "-Infinity"
    assert docs["nan"]["metrics"]["x"] == "NaN"
    assert docs["one"]["metrics"]["x"] == 1.5
    run_id = docs["pinf"]["run_id"]
    with open(os.path.join(lab, "nf_1", "derived", f"{run_id}.json"), encoding="utf-8") as fh:
        assert json.load(fh) == {"d": "Infinity", "ratio": "-Infinity"}
    with open(os.path.join(lab, "nf_1", "results", run_id, "loss.json"), encoding="utf-8") as fh:
        series = json.load(fh)
    assert series["data"]["value"] == [0.5, "NaN", "Infinity", "-Infinity"]


def test_runs_records_and_results_read_floats(lab: str) -> None:
    results = load_results(lab, experiment_id="nf:1")
    assert len(results) == 4 and not results.problems
    for run in results:
        which = run.params["which"]
        assert _is(run.metrics["x"], VALUES[which]), (which, run.metrics)
        assert _is(run.record.metrics["x"], VALUES[which])
        assert _is(run.derived["d"], VALUES[which] * 2)
        assert _is(run.derived["ratio"], -math.inf)
        series = run.metric_series("loss")
        assert series[0] == (0, 0.5) and math.isnan(series[1][1])
        assert series[2:] == [(2, math.inf), (3, -math.inf)]
        data = run.data("loss")
        assert data["value"][0] == 0.5 and math.isnan(data["value"][1])
        assert data["value"][2:] == [math.inf, -math.inf]
    one = next(r for r in results if r.params["which"] == "pinf")
    with FileStoreConfig(root=lab, experiment_id="nf:1").connect() as store:
        record = store.get_run_record(one.run_id)
        assert record is not None and record.metrics["x"] == math.inf
        assert Run.from_store(store, one.run_id).metrics["x"] == math.inf


def test_dataframe_columns_are_floats(lab: str) -> None:
    results = load_results(lab, experiment_id="nf:1")
    df = results.to_dataframe().set_index("params.which")
    assert str(df["x"].dtype) == "float64"
    assert df.loc["pinf", "x"] == math.inf and df.loc["ninf", "x"] == -math.inf
    assert math.isnan(df.loc["nan", "x"]) and df.loc["one", "x"] == 1.5
    assert str(df["derived.d"].dtype) == "float64" and df.loc["pinf", "derived.d"] == math.inf
    assert str(df["derived.ratio"].dtype) == "float64"
    series = results.metric_series("loss")
    assert str(series["value"].dtype) == "float64"
    assert sorted(series["value"].isna()) == [False] * 12 + [True] * 4
    assert (series["value"] == math.inf).sum() == 4
    agg = results.aggregate(by=["which"], metrics=["x"], stats=["max"])
    assert agg.set_index("params.which").loc["pinf", "x_max"] == math.inf
    arrow = results.to_arrow()
    assert str(arrow.schema.field("x").type) == "double"


@pytest.mark.parametrize("engine", ["results", "store"])
def test_where_finds_infinite_metrics_and_they_are_not_missing(lab: str, engine: str) -> None:
    results = load_results(lab, experiment_id="nf:1")

    def which(query: str) -> list[str]:
        if engine == "results":
            return sorted(r.params["which"] for r in results.where(query))
        found = load_results(lab, experiment_id="nf:1", where=query)
        return sorted(r.params["which"] for r in found)

    assert which("metrics.x > 1e308") == ["pinf"]
    assert which("metrics.x < -1e308") == ["ninf"]
    assert which("metrics.x is null") == []
    assert which("metrics.x is not null") == sorted(VALUES)
    assert which("metrics.x != 1.5") == ["nan", "ninf", "pinf"]
    assert which("metrics.x = 1.5") == ["one"]
    assert which("derived.d > 1e308") == ["pinf"]
    assert which("metrics.x = 'Infinity'") == []  # a number, not a text


def test_derived_function_returning_non_finite_values(lab: str) -> None:
    run = load_results(lab, experiment_id="nf:1")[0]
    values = compute_derived_for_run(run, [lambda r: {"a": math.nan, "b": math.inf}])
    assert math.isnan(values["a"]) and values["b"] == math.inf


def test_texts_reserved_for_non_finite_numbers_are_refused(tmp_path: Any) -> None:
    from metalab.execution._capture import to_scalar

    for text in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValidationError, match="reserved"):
            to_scalar("m", text)
    assert to_scalar("m", "nan") == "nan"  # other texts stay texts
    assert to_scalar("m", "Inf") == "Inf"


def test_record_round_trip_keeps_non_finite_metrics() -> None:
    record = RunRecord(run_id="r1", experiment_id="e:1", status=Status.SUCCESS,
                       metrics={"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1, "e": "x"})
    doc = record.to_dict()
    assert doc["metrics"] == {"a": "Infinity", "b": "-Infinity", "c": "NaN", "d": 1, "e": "x"}
    back = RunRecord.from_dict(json.loads(json.dumps(doc)))
    assert back.metrics["a"] == math.inf and back.metrics["b"] == -math.inf
    assert math.isnan(back.metrics["c"]) and back.metrics["d"] == 1 and back.metrics["e"] == "x"
    assert back.to_dict() == doc


def _data_op(params: dict[str, Any], capture: Any) -> None:
    import numpy as np

    capture.data("arr", np.array([[1.5, np.inf], [np.nan, -np.inf]], dtype=params["dtype"]))
    capture.data("scalar", np.float64("nan"))
    capture.data("ints", np.arange(3))
    try:
        capture.data("lst", [1.0, float("inf")])
    except ValidationError as exc:
        capture.metric("refused", str(exc))


def test_numpy_float_data_keeps_non_finite_elements_and_other_data_refuses_them(
        tmp_path: Any) -> None:
    import numpy as np

    exp = metalab.Experiment(name="nfd", version="1", context={}, operation=_data_op,
                             params=metalab.grid(dtype=["float32", "float64"]),
                             seeds=metalab.seeds(0))
    root = str(tmp_path / "lab")
    metalab.run(exp, store=root).result()
    results = load_results(root, experiment_id="nfd:1")
    assert len(results) == 2
    for run in results:
        assert run.status is Status.SUCCESS
        arr = run.data("arr")
        assert arr.dtype == np.dtype(run.params["dtype"]) and arr.shape == (2, 2)
        assert arr[0, 0] == 1.5 and arr[0, 1] == np.inf and np.isnan(arr[1, 0])
        assert arr[1, 1] == -np.inf
        assert np.isnan(run.data("scalar")) and run.data("ints").tolist() == [0, 1, 2]
        assert "NaN or an infinity" in run.metrics["refused"]
        assert "lst" not in run.list_data()
        path = os.path.join(root, "nfd_1", "results", run.run_id, "arr.json")
        with open(path, encoding="utf-8") as fh:
            assert json.load(fh)["data"] == [[1.5, "Infinity"], ["NaN", "-Infinity"]]


def test_store_put_data_refuses_non_finite_values_outside_series(tmp_path: Any) -> None:
    with FileStoreConfig(root=str(tmp_path), experiment_id="e:1").connect() as store:
        with pytest.raises(ValidationError, match="NaN or an infinity"):
            store.put_data("r1", "d", {"data": {"a": [math.nan]}})
        store.put_data("r1", "s", {"kind": "series", "data": {"step": [0, 1],
                                                               "value": [math.inf, None]}})
        assert store.get_data("r1", "s")["data"]["value"] == ["Infinity", None]
        store.put_derived("r1", {"d": -math.inf, "n": None})
        assert store.get_derived("r1") == {"d": "-Infinity", "n": None}


def test_derived_values_reach_any_store_in_the_stored_form(memory_store: Any) -> None:
    """A store of another backend gets the JSON texts (it need not know the rule)."""
    from analysis_support import make_record

    from metalab.analysis import Results

    memory_store.put_run_record(make_record("m0", metrics={"loss": math.nan}))
    results = Results(memory_store, memory_store.iter_run_documents())
    results.compute_derived(lambda run: {"worst": math.inf, "loss": run.metrics["loss"]})
    assert memory_store.get_derived("m0") == {"worst": "Infinity", "loss": "NaN"}
    again = load_results(memory_store)
    assert again["m0"].derived["worst"] == math.inf and math.isnan(again["m0"].derived["loss"])
    assert math.isnan(again["m0"].metrics["loss"])
