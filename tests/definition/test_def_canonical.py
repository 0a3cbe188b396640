"""Canonical encoding: deterministic, order independent, and injective across types."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metalab.definition as d
from metalab._errors import CanonicalizationError, ValidationError
from metalab.definition import canonical_bytes, fingerprint

# Small alphabets and tag-like strings so that near-collisions ("1" vs 1 vs 1.0,
# {"$f": "1.0"} vs 1.0) are common.
TRICKY_STR = ["1", "1.0", "0.5", "$f", "$m", "$s", "$$f", "", "true", "null", "[1]"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, 1e300, -1e-300]),
    st.sampled_from(TRICKY_STR),
    st.text(alphabet="1$f.0", max_size=3),
)
str_keys = st.one_of(st.sampled_from(TRICKY_STR), st.text(alphabet="1$f.m", max_size=3))
keys = st.one_of(str_keys, st.integers(-2, 2), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(str_keys, inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
    ),
    max_leaves=8,
)

# Flat items collide often (1.0 vs "1.0", {"$f": "1.0"}, {1: x} vs {"1": x}); deep ones add variety.
batch_items = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(keys, scalars, max_size=1),
    values,
)


def norm(v: Any) -> Any:
    """Reference equality that keeps types apart (tuples count as lists)."""
    if v is None:
        return ("none",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, list | tuple):
        return ("list", tuple(norm(x) for x in v))
    if isinstance(v, dict):
        return ("dict", frozenset((norm(k), norm(x)) for k, x in v.items()))
    raise AssertionError(type(v))


@settings(max_examples=300, deadline=None)
@given(st.lists(batch_items, min_size=2, max_size=60))
def test_injective_on_generated_values(batch: list[Any]) -> None:
    # equal bytes <=> equal values (types kept apart), over every pair in the batch
    by_bytes: dict[bytes, set[Any]] = {}
    for v in batch:
        by_bytes.setdefault(canonical_bytes(v), set()).add(norm(v))
    assert all(len(group) == 1 for group in by_bytes.values())
    assert len(by_bytes) == len({norm(v) for v in batch})


@settings(max_examples=200, deadline=None)
@given(values)
def test_deterministic_and_dict_order_independent(v: Any) -> None:
    def reorder(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: reorder(x[k]) for k in reversed(list(x))}
        if isinstance(x, list | tuple):
            return type(x)(reorder(i) for i in x)
        return x

    assert canonical_bytes(v) == canonical_bytes(v)
    assert canonical_bytes(reorder(v)) == canonical_bytes(v)
    assert fingerprint(reorder(v)) == fingerprint(v)


def test_tricky_values_all_differ() -> None:
    tricky = [
        1, 1.0, "1.0", "1", True, None, [1], {"1": 1}, {1: 1}, {True: 1},
        {"$f": "1.0"}, {"$m": []}, {"$$f": "1.0"}, [], {}, "", 0, False, 0.0, -0.0,
        {1}, b"1", PurePosixPath("1"), [[1]], {"a": [1.0]}, {"a": [1]},
    ]  # fmt: skip
    encoded = [canonical_bytes(v) for v in tricky]
    assert len(set(encoded)) == len(tricky)


def test_fixed_encoding_and_fingerprint() -> None:
    value = {"lr": 0.1, "n": 3, "name": "x", "ok": True, "none": None, "$k": [1, (2,)], 5: "i"}
    expected = (
        b'{"$m":[["$k",[1,[2]]],["lr",{"$f":"0.1"}],["n",3],["name","x"],'
        b'["none",null],["ok",true],[5,"i"]]}'
    )
    assert canonical_bytes(value) == expected
    assert canonical_bytes({"lr": 0.1, "$k": 1}) == b'{"$$k":1,"lr":{"$f":"0.1"}}'
    assert fingerprint({"lr": 0.1}) == hashlib.sha256(b'{"lr":{"$f":"0.1"}}').hexdigest()[:16]
    assert len(fingerprint(1)) == 16


def test_tuples_encode_like_lists() -> None:
    assert canonical_bytes((1, (2, 3))) == canonical_bytes([1, [2, 3]])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_non_finite_names_the_key_path(bad: Any) -> None:
    with pytest.raises(CanonicalizationError) as exc:
        canonical_bytes({"opt": {"lr": bad}}, path="params")
    msg = str(exc.value)
    assert "params.opt.lr" in msg
    assert "finite number or a string" in msg
    assert isinstance(exc.value, ValidationError)


def test_non_finite_inside_list_path() -> None:
    with pytest.raises(CanonicalizationError, match=r"layers\[1\]"):
        canonical_bytes({"layers": [1.0, math.inf]})


def test_unsupported_type_named() -> None:
    class Weird:
        pass

    with pytest.raises(CanonicalizationError, match="Weird"):
        canonical_bytes({"w": Weird()})


def test_numpy_values_convert_to_python() -> None:
    assert canonical_bytes(np.float64(0.5)) == canonical_bytes(0.5)
    assert canonical_bytes(np.int64(3)) == canonical_bytes(3)
    assert canonical_bytes(np.bool_(True)) == canonical_bytes(True)
    assert canonical_bytes(np.arange(3)) == canonical_bytes([0, 1, 2])
    assert canonical_bytes({"a": np.array([[1.5]])}) == canonical_bytes({"a": [[1.5]]})


@dataclasses.dataclass
class Cfg:
    a: int
    b: float


@dataclasses.dataclass
class Other:
    a: int
    b: float


class Color(enum.Enum):
    RED = 1


def test_dataclasses_include_class_name() -> None:
    assert canonical_bytes(Cfg(1, 2.0)) != canonical_bytes(Other(1, 2.0))
    assert canonical_bytes(Cfg(1, 2.0)) != canonical_bytes({"a": 1, "b": 2.0})
    assert canonical_bytes(Cfg(1, 2.0)) == canonical_bytes(Cfg(1, 2.0))
    assert b"Cfg" in canonical_bytes(Cfg(1, 2.0))


def test_sets_enums_bytes() -> None:
    assert canonical_bytes({3, 1, 2}) == canonical_bytes({2, 3, 1})
    assert canonical_bytes({1, 2}) != canonical_bytes([1, 2])
    assert canonical_bytes(Color.RED) != canonical_bytes(1)
    assert canonical_bytes(b"ab") != canonical_bytes("ab")


def test_self_reference_is_an_error_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CanonicalizationError, match="nested"):
        canonical_bytes(loop)


def test_package_all_sorted() -> None:
    assert d.__all__ == sorted(d.__all__)
    for name in d.__all__:
        assert getattr(d, name) is not None
