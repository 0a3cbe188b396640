"""Run identity and the Experiment definition."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab._errors import CanonicalizationError, ValidationError
from metalab._internal import _json
from metalab._version import __version__
from metalab.definition import (
    Experiment,
    FilePath,
    Operation,
    RunSpec,
    SeedBundle,
    SeedPlan,
    choice,
    compute_run_id,
    fingerprint,
    grid,
    manual,
    operation,
    random,
    seeds,
    source_from_manifest,
    uniform,
)


@operation
def train(params: Any, seeds: Any) -> Any:
    return params


@operation(name="train_v2")
def train_edited(params: Any, seeds: Any) -> Any:
    # a different body and comment: must not change run ids
    return {"edited": params}


def make(**kw: Any) -> Experiment:
    args: dict[str, Any] = dict(
        name="exp",
        version="1.0",
        context={"dataset": "mnist"},
        operation=train,
        params=grid(lr=[0.1, 0.01], depth=[2, 4, 8]),
        seeds=seeds(7, replicates=3),
    )
    args.update(kw)
    return Experiment(**args)


# ----------------------------------------------------------------------- run ids


def test_compute_run_id_fixed_value() -> None:
    # Changing the canonical encoding or the id formula must fail this test.
    assert compute_run_id("exp:1", "a" * 16, "b" * 16, "c" * 16) == "e7ea8fd2173af512"


def test_experiment_run_id_fixed_value() -> None:
    exp = Experiment("fixed", "1", {"a": 1}, train, grid(lr=[0.1]), seeds(0))
    spec = exp.spec(0)
    assert spec.params_fingerprint == fingerprint({"lr": 0.1})
    assert spec.seed_fingerprint == fingerprint({"root_seed": 0, "replicate_index": 0})
    assert spec.context_fingerprint == fingerprint({"a": 1})
    assert spec.run_id == compute_run_id(
        "fixed:1", spec.context_fingerprint, spec.params_fingerprint, spec.seed_fingerprint
    )
    assert spec.run_id == "e10ae3dcf80cf6bc"


hexes = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


@given(st.text(min_size=1, max_size=20), hexes, hexes, hexes)
def test_run_id_is_a_pure_function(exp_id: str, c: str, p: str, s: str) -> None:
    rid = compute_run_id(exp_id, c, p, s)
    assert rid == compute_run_id(exp_id, c, p, s)
    assert len(rid) == 16 and int(rid, 16) >= 0
    # every component matters (inputs are distinct strings, so ids must differ)
    if p != s:
        assert compute_run_id(exp_id, c, s, p) != rid
    assert compute_run_id(exp_id + "x", c, p, s) != rid


def test_run_id_rejects_non_strings() -> None:
    with pytest.raises(ValidationError):
        compute_run_id("e:1", "a", 1, "c")  # type: ignore[arg-type]


# -------------------------------------------------------------------- experiment


def test_basic_properties() -> None:
    exp = make(tags=["a", "b"], description="d")
    assert exp.experiment_id == "exp:1.0"
    assert exp.total_runs == 6 * 3
    assert exp.tags == ("a", "b")
    assert exp.metadata == {}
    assert isinstance(exp.operation, Operation)
    assert len(exp.context_fingerprint) == 16


def test_spec_matches_iter_specs() -> None:
    exp = make(params=random({"x": uniform(0, 1), "c": choice(["a", "b"])}, 5, seed=2))
    specs = list(exp.iter_specs())
    assert len(specs) == exp.total_runs == 15
    for i, s in enumerate(specs):
        assert exp.spec(i) == s
        assert s.index == i
        assert s.seed == SeedBundle(7, i % 3)
        assert s.params == exp.params[i // 3].params
        assert s.tags == (f"trial_{i // 3}",)
        assert s.experiment_id == "exp:1.0"
    assert len({s.run_id for s in specs}) == len(specs)
    assert isinstance(specs[0], RunSpec)


def test_spec_index_errors() -> None:
    exp = make()
    for bad in (-1, exp.total_runs, exp.total_runs + 10):
        with pytest.raises(IndexError):
            exp.spec(bad)


def test_spec_is_constant_time_on_huge_grids() -> None:
    big = grid(**{f"k{i:02d}": list(range(10)) for i in range(15)})
    exp = make(params=big, seeds=seeds(1, 1000))
    assert exp.total_runs == 10**15 * 1000
    last = exp.spec(exp.total_runs - 1)
    assert last.seed.replicate_index == 999 and set(last.params.values()) == {9}


def test_run_ids_ignore_code_and_names_but_not_identity_inputs() -> None:
    base = [s.run_id for s in make().iter_specs()]
    assert [s.run_id for s in make(operation=train_edited).iter_specs()] == base
    assert [s.run_id for s in make(description="x", tags=["t"], metadata={"m": 1})
            .iter_specs()] == base  # fmt: skip
    assert train.code_hash != train_edited.code_hash
    assert [s.run_id for s in make(version="2.0").iter_specs()] != base
    assert make(context={"dataset": "cifar"}).spec(0).run_id != base[0]
    assert make(seeds=seeds(8, 3)).spec(0).run_id != base[0]
    assert make(params=grid(lr=[0.1, 0.01], depth=[2.0, 4, 8])).spec(0).run_id != base[0]


def test_run_ids_survive_manifest_round_trip() -> None:
    exp = make(params=manual([{"a": (1, 2)}, {"a": 0.5}]))
    m = _json.loads(_json.dumps(exp.manifest([s.run_id for s in exp.iter_specs()])))
    rebuilt = Experiment(
        m["name"], m["version"], exp.context, train,
        source_from_manifest(m["params"]), SeedPlan.from_manifest(m["seeds"]),
    )  # fmt: skip
    assert [s.run_id for s in rebuilt.iter_specs()] == m["run_ids"]
    assert rebuilt.context_fingerprint == m["context_fingerprint"]


def test_manifest_contents(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("x")
    exp = make(context={"data": FilePath(f)}, description="desc", tags=("t",),
               metadata={"owner": "me"})  # fmt: skip
    m = exp.manifest()
    assert m["experiment_id"] == "exp:1.0" and m["name"] == "exp" and m["version"] == "1.0"
    assert m["description"] == "desc" and m["tags"] == ["t"] and m["metadata"] == {"owner": "me"}
    assert m["operation"] == {
        "ref": train.ref,
        "name": "train",
        "code_hash": train.code_hash,
    }
    assert m["params"]["type"] == "grid" and m["seeds"] == seeds(7, 3).to_manifest()
    assert m["context_fingerprint"] == exp.context_fingerprint
    assert set(m["context"]) == {"context.data"}
    assert m["total_runs"] == 18 and m["run_ids"] is None
    assert m["created_by"] == {"metalab": __version__}
    assert exp.manifest(run_ids=("a", "b"))["run_ids"] == ["a", "b"]
    _json.dumps(m)


def test_context_is_lazy_and_cached(tmp_path: Path) -> None:
    p = tmp_path / "late.csv"
    exp = make(context={"data": FilePath(p)})  # file does not exist yet: fine
    with pytest.raises(ValidationError, match=r"late\.csv"):
        exp.spec(0)
    p.write_text("hi")
    first = exp.spec(0).run_id
    p.write_text("changed!!")
    os.utime(p, ns=(1, 1))
    assert exp.spec(0).run_id == first  # fingerprint computed once per experiment


def test_nan_params_surface_when_spec_built() -> None:
    exp = make(params=grid(lr=[0.1, math.nan]), seeds=seeds(0))
    exp.spec(0)
    with pytest.raises(CanonicalizationError, match=r"params\.lr"):
        exp.spec(1)


def test_plain_function_is_wrapped() -> None:
    def op(params: Any) -> Any:
        return params

    exp = make(operation=op)
    assert isinstance(exp.operation, Operation) and exp.operation.func is op


@dataclasses.dataclass
class Ctx:
    lr_schedule: str


@pytest.mark.parametrize(
    "kw",
    [
        {"name": ""},
        {"name": "a:b"},
        {"name": 3},
        {"version": ""},
        {"version": None},
        {"operation": "train"},
        {"operation": lambda x: x},
        {"params": [{"a": 1}]},
        {"seeds": 3},
        {"tags": "abc"},
        {"tags": [1]},
        {"metadata": [1]},
        {"description": 5},
    ],
)
def test_validation_on_construction(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make(**kw)


def test_dataclass_context_and_immutability() -> None:
    exp = make(context=Ctx("cosine"))
    assert exp.context_fingerprint != make(context={"lr_schedule": "cosine"}).context_fingerprint
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.name = "other"  # type: ignore[misc]
