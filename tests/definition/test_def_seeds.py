"""Seeds: stable derived streams, indexable plans, manifest round trips."""

from __future__ import annotations

import hashlib
import pickle
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab._errors import MissingDependencyError, ValidationError
from metalab.definition import SeedBundle, SeedPlan, seeds


def test_derive_fixed_values() -> None:
    # These numbers must never change: they seed every user's RNG streams.
    assert SeedBundle(42, 0).derive("default") == 779967526980816642
    assert SeedBundle(42, 0).derive("init") == 6207855095140610619
    assert SeedBundle(42, 1).derive("default") == 1531194875033676141
    assert SeedBundle(-7, 3).derive("data") == 1029554265324463728
    digest = hashlib.sha256(b"metalab.seed:42:0:default").digest()
    assert SeedBundle(42, 0).derive("default") == int.from_bytes(digest[:8], "big") >> 1


@given(st.integers(-(2**70), 2**70), st.integers(0, 1000), st.text(max_size=10))
def test_derive_is_63_bit_and_pure(root: int, rep: int, name: str) -> None:
    value = SeedBundle(root, rep).derive(name)
    assert 0 <= value < 2**63
    assert value == SeedBundle(root, rep).derive(name)


def test_streams_are_independent_and_reproducible() -> None:
    b = SeedBundle(1, 0)
    assert b.rng().random() == SeedBundle(1, 0).rng("default").random()
    assert b.rng("a").random() != b.rng("b").random()
    assert b.rng().random() != SeedBundle(1, 1).rng().random()
    assert list(b.numpy("x").integers(0, 10**9, 4)) == list(
        SeedBundle(1, 0).numpy("x").integers(0, 10**9, 4)
    )
    assert b.numpy().integers(0, 10**9) != SeedBundle(2, 0).numpy().integers(0, 10**9)


def test_numpy_missing_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingDependencyError, match="metalab\\[numpy\\]"):
        SeedBundle(1, 0).numpy()


def test_bundle_dict_roundtrip_and_validation() -> None:
    b = SeedBundle(5, 2)
    assert b.to_dict() == {"root_seed": 5, "replicate_index": 2}
    assert SeedBundle.from_dict(b.to_dict()) == b
    assert pickle.loads(pickle.dumps(b)) == b
    for bad in [("1", 0), (1.0, 0), (True, 0), (1, -1), (1, None)]:
        with pytest.raises(ValidationError):
            SeedBundle(*bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SeedBundle.from_dict({"seed": 1})


def test_seed_plan_indexing_and_manifest() -> None:
    plan = seeds(10, replicates=4)
    assert len(plan) == 4
    assert list(plan) == [SeedBundle(10, i) for i in range(4)]
    assert plan[-1] == SeedBundle(10, 3) == plan[3]
    with pytest.raises(IndexError):
        plan[4]
    with pytest.raises(IndexError):
        plan[-5]
    assert SeedPlan.from_manifest(plan.to_manifest()) == plan
    assert seeds(3) == SeedPlan(3, 1)


@pytest.mark.parametrize("args", [(1, 0), (1, -2), ("1", 1), (1.5, 1), (1, 2.0)])
def test_seed_plan_validation(args: tuple[object, object]) -> None:
    with pytest.raises(ValidationError):
        seeds(*args)  # type: ignore[arg-type]
