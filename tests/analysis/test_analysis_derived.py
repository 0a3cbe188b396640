"""Derived metrics: resolving functions, computing, persisting and reading them back."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any

import pytest
from analysis_support import EXP, make_record

from metalab._errors import ValidationError
from metalab.analysis import Results, Run, compute_derived_for_run, load_results, resolve_derived


def _double_loss(run: Run) -> dict[str, Any]:
    return {"double_loss": 2 * run.metrics["loss"]}


@pytest.fixture
def helper_module(tmp_path: Any, monkeypatch: Any) -> str:
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "analysis_helpers_mod.py").write_text(
        "def score(run):\n    return {'score': run.params['a'] * 10}\n"
        "class Box:\n    @staticmethod\n    def inner(run):\n        return {'inner': 1}\n"
        "NOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "analysis_helpers_mod", raising=False)
    return "analysis_helpers_mod"


def test_resolve_derived(helper_module: str) -> None:
    fn = resolve_derived(f"{helper_module}:score")
    assert callable(fn) and fn.__name__ == "score"
    assert resolve_derived(f"{helper_module}:Box.inner")(None) == {"inner": 1}  # type: ignore[arg-type]
    lam = lambda run: {}  # noqa: E731 - lambdas are fine in-process
    assert resolve_derived(lam) is lam
    for bad, msg in [
        ("no_colon", "module:function"),
        ("definitely_not_a_module_xyz:f", "cannot import"),
        (f"{helper_module}:missing", "no attribute"),
        (f"{helper_module}:NOT_CALLABLE", "not a callable"),
    ]:
        with pytest.raises(ValidationError, match=msg):
            resolve_derived(bad)
    with pytest.raises(ValidationError):
        resolve_derived(3)  # type: ignore[arg-type]


def test_compute_derived_is_persisted_on_disk(sweep: Any, helper_module: str) -> None:
    results = load_results(sweep).successful
    out = results.compute_derived([_double_loss, f"{helper_module}:score"])
    assert out is results
    assert results["run2"].derived == {"double_loss": 1.0, "score": 20}
    path = os.path.join(sweep.get_working_directory(), "derived", "run2.json")
    with open(path, "rb") as fh:
        assert json.loads(fh.read()) == {"double_loss": 1.0, "score": 20}
    assert not os.path.exists(os.path.join(sweep.get_working_directory(), "derived", "run5.json"))
    # a fresh load sees them, in the DataFrame too
    df = load_results(sweep).to_dataframe().set_index("run_id")
    assert df.loc["run2", "derived.score"] == 20
    assert df.loc["run0", "derived.double_loss"] == 2.0


def test_derived_visible_through_the_parent_and_filters(sweep: Any) -> None:
    parent = load_results(sweep)
    parent.filter(a=1).compute_derived(lambda run: {"flag": True})
    assert parent["run0"].derived == {"flag": True}
    assert sorted(parent.filter(flag=True).run_ids) == ["run0", "run1"]
    assert sorted(parent.filter(**{"derived.flag": True}).run_ids) == ["run0", "run1"]


def test_overwrite_semantics(sweep: Any) -> None:
    results = load_results(sweep).filter(a=1, b="x")
    results.compute_derived(lambda run: {"v": 1})
    results.compute_derived(lambda run: {"v": 2, "w": 3})
    assert results[0].derived == {"v": 1, "w": 3}  # existing keys kept
    results.compute_derived(lambda run: {"v": 2}, overwrite=True)
    assert results[0].derived == {"v": 2, "w": 3}
    assert load_results(sweep)["run0"].derived == {"v": 2, "w": 3}


def test_failing_function_warns_and_continues(sweep: Any, caplog: Any) -> None:
    results = load_results(sweep)

    def fragile(run: Run) -> dict[str, Any]:
        return {"inv_loss": 1 / run.metrics["loss"]}  # KeyError on the failed run

    with caplog.at_level(logging.WARNING, logger="metalab.analysis"):
        results.compute_derived(fragile)
    assert "run5" in caplog.text and "fragile" in caplog.text
    assert results["run0"].derived == {"inv_loss": 1.0}
    assert results["run5"].derived == {}


def test_compute_derived_for_run_drops_bad_outputs(sweep: Any, caplog: Any) -> None:
    run = load_results(sweep)["run0"]
    with caplog.at_level(logging.WARNING, logger="metalab.analysis"):
        values = compute_derived_for_run(
            run,
            [
                lambda r: [1, 2],  # not a dict
                lambda r: {"ok": 1, "obj": object(), 3: "x"},  # unencodable value, bad key
                lambda r: {"nan": float("nan"), "nested": [1.0, float("inf")], "text": "NaN"},
            ],
        )
    nan = values.pop("nan")
    assert values == {"ok": 1} and math.isnan(nan)  # (kept: stored as "NaN", read as NaN)
    assert "must return a dict" in caplog.text
    assert "'obj'" in caplog.text and "run0" in caplog.text
    assert "'nested'" in caplog.text and "inside a list or object" in caplog.text
    assert "the text 'NaN'" in caplog.text and "reserved" in caplog.text


def test_derived_on_store_without_working_directory(memory_store: Any) -> None:
    for i in range(3):
        memory_store.put_run_record(make_record(f"m{i}", params={"i": i}))
    results = Results(memory_store, memory_store.iter_run_documents())
    results.compute_derived(lambda run: {"sq": run.params["i"] ** 2})
    fresh = load_results(memory_store)
    assert fresh.to_dataframe().set_index("run_id").loc["m2", "derived.sq"] == 4
    assert fresh.filter(sq=[0, 1]).run_ids == ["m0", "m1"]
    assert fresh.experiments == [EXP]


def test_derived_goes_to_each_experiment_folder(root: Any, file_store: Any) -> None:
    stores = {eid: file_store(eid) for eid in (EXP, "other:2")}
    for eid, store in stores.items():
        store.put_run_record(make_record(f"{eid[0]}1", experiment_id=eid, params={"a": 1}))
    results = load_results(str(root))
    assert results.experiments == [EXP, "other:2"]
    results.compute_derived(lambda run: {"exp": run.experiment_id})
    for eid, store in stores.items():
        path = os.path.join(store.get_working_directory(), "derived", f"{eid[0]}1.json")
        with open(path, "rb") as fh:
            assert json.loads(fh.read()) == {"exp": eid}
    assert set(load_results(str(root)).to_dataframe()["derived.exp"]) == {EXP, "other:2"}


def test_derived_through_an_experiment_folder_path(file_store: Any) -> None:
    store = file_store(EXP)
    store.put_run_record(make_record("r1"))
    folder = store.get_working_directory()
    load_results(folder).compute_derived(lambda run: {"d": 1})
    assert os.path.isfile(os.path.join(folder, "derived", "r1.json"))
    assert load_results(folder)["r1"].derived == {"d": 1}
