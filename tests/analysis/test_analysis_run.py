"""Run: record fields and lazy access to artifacts, data, series and logs."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from analysis_support import EXP, T0, make_record

from metalab._errors import NotFoundError, StoreError
from metalab.analysis import Run, load_results
from metalab.model import ErrorInfo, RunRecord, Status, serialize


@pytest.fixture
def run(file_store: Any) -> Run:
    store = file_store(EXP)
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    descs = []
    for name, obj in (("config", {"lr": 0.1}), ("weights", arr), ("report", "done")):
        data, kind, fmt = serialize(obj, "text" if name == "report" else None)
        descs.append(store.put_artifact("r1", name, data, kind=kind, format=fmt))
    store.put_data(
        "r1", "matrix",
        {"kind": "data", "data": [[1, 2, 3], [4, 5, 6]], "dtype": "int16", "shape": [2, 3]},
    )
    store.put_data("r1", "summary", {"data": {"best": 3}})
    store.put_data(
        "r1", "loss", {"kind": "series", "data": {"step": [0, 10, 20], "value": [1.0, 0.5, None]}}
    )
    store.append_log("r1", "run", "line 1\n")
    store.append_log("r1", "run", "line 2\n")
    store.append_log("r1", "stderr", "oops\n")
    store.put_run_record(
        make_record(
            "r1", params={"n": 10}, metrics={"acc": 0.9}, tags=("t",),
            artifacts=tuple(descs), data=("matrix", "summary"), series=("loss",),
        )
    )
    return load_results(store)["r1"]


def test_record_fields(run: Run) -> None:
    assert run.run_id == "r1" and run.experiment_id == EXP
    assert run.status is Status.SUCCESS
    assert run.params == {"n": 10} and run.metrics == {"acc": 0.9}
    assert run.tags == ("t",)
    assert run.seed == {"root_seed": 7, "replicate_index": 0}
    assert run.started_at == T0 and run.finished_at == T0 + timedelta(seconds=2)
    assert run.duration_ms == 2000.0
    assert run.error is None
    assert isinstance(run.record, RunRecord) and run.record.run_id == "r1"
    assert run.derived == {}
    run.params["n"] = 99  # copies: the run is not changed
    assert run.params == {"n": 10}


def test_failed_run_error(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("f", status="failed"))
    run = load_results(store)["f"]
    assert run.error == ErrorInfo("ValueError", "boom")
    assert "failed" in repr(run)


def test_artifacts_round_trip(run: Run) -> None:
    assert run.artifact("config") == {"lr": 0.1}
    weights = run.artifact("weights")
    assert weights.dtype == np.float32 and weights.shape == (2, 3)
    assert weights[1, 2] == 5.0
    assert run.artifact("report") == "done"
    assert sorted(a.name for a in run.artifacts()) == ["config", "report", "weights"]
    path = run.artifact_path("weights")
    assert os.path.isfile(path) and path.endswith(".npz")


def test_missing_artifact_lists_available(run: Run) -> None:
    with pytest.raises(NotFoundError, match="config") as info:
        run.artifact("confg")
    assert "Did you mean 'config'" in str(info.value)
    with pytest.raises(KeyError):  # NotFoundError is also a KeyError
        run.artifact_path("nope")


def test_data_rebuilt_with_dtype_and_shape(run: Run) -> None:
    matrix = run.data("matrix")
    assert isinstance(matrix, np.ndarray)
    assert matrix.dtype == np.int16 and matrix.shape == (2, 3)
    assert matrix.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert run.data("summary") == {"best": 3}
    assert run.list_data() == ["loss", "matrix", "summary"]
    with pytest.raises(NotFoundError, match="summary"):
        run.data("sumary")


def test_data_without_numpy_is_the_json_value(run: Run, monkeypatch: Any) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)
    assert run.data("matrix") == [[1, 2, 3], [4, 5, 6]]


def test_metric_series(run: Run) -> None:
    series = run.metric_series("loss")
    assert series[:2] == [(0, 1.0), (10, 0.5)]
    assert series[2][0] == 20 and np.isnan(series[2][1])
    with pytest.raises(NotFoundError, match="'loss'"):
        run.metric_series("accuracy")
    with pytest.raises(NotFoundError):
        run.metric_series("matrix")  # data, not a series


def test_logs(run: Run) -> None:
    assert run.logs() == "line 1\nline 2\n"
    assert run.logs("stderr") == "oops\n"
    assert run.logs("absent") == ""
    assert run.list_logs() == ["run", "stderr"]


def test_run_from_store(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("x", params={"p": 1}))
    assert Run.from_store(store, "x").params == {"p": 1}
    with pytest.raises(NotFoundError):
        Run.from_store(store, "y")


def test_store_without_working_directory(memory_store: Any) -> None:
    data, kind, fmt = serialize({"k": 1})
    desc = memory_store.put_artifact("m", "cfg", data, kind=kind, format=fmt)
    memory_store.put_run_record(make_record("m", artifacts=(desc,)))
    run = load_results(memory_store)["m"]
    assert run.artifact("cfg") == {"k": 1}
    with pytest.raises(StoreError, match="artifact"):
        run.artifact_path("cfg")


def test_equality_and_hash(run: Run) -> None:
    again = load_results(run._ctx.store)["r1"]
    assert again == run and hash(again) == hash(run)
    assert "r1" in repr(run) and "acc" in repr(run)
