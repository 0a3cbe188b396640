"""Canonical encoding: deterministic, order independent, and injective across types."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import re
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


# ------------------------------------------------------- no collisions, every accepted type


class Suit(enum.Enum):
    HEARTS = 1
    SPADES = 2
    CLUBS = "1"
    DIAMONDS = 1.0 + 0.5
    JOKER = None


class Rank(enum.Enum):  # the same values under another class name
    HEARTS = 1
    SPADES = 2


class Level(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass(frozen=True)
class Box:
    x: Any


@dataclasses.dataclass(frozen=True)
class Crate:
    x: Any


class Hooked:
    """Encoded through ``__metalab_canonical__`` (as FilePath and DirPath are)."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __metalab_canonical__(self) -> Any:
        return self.payload


hashables = st.recursive(
    st.one_of(
        scalars,
        st.binary(max_size=2),
        st.sampled_from([*Suit, *Rank, *Level]),
        st.sampled_from([PurePosixPath("1"), PurePosixPath("a/b"), PurePosixPath("$f")]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(Box, inner),
        st.builds(Crate, inner),
    ),
    max_leaves=5,
)
rich_values = st.recursive(
    hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(str_keys, inner, max_size=3),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.builds(Box, inner),
        st.binary(max_size=2).map(bytearray),
    ),
    max_leaves=8,
)


def rich_norm(v: Any) -> Any:
    """Reference equality over every accepted type (tuples count as lists, bytearray as
    bytes, sets as frozensets; enums and dataclasses by class name and content)."""
    if isinstance(v, enum.Enum):
        return ("enum", type(v).__qualname__, rich_norm(v.value))
    if v is None or isinstance(v, bool | int | float | str):
        return norm(v)
    if isinstance(v, bytes | bytearray):
        return ("bytes", bytes(v))
    if isinstance(v, PurePosixPath):
        return ("path", v.as_posix())
    if isinstance(v, list | tuple):
        return ("list", tuple(rich_norm(x) for x in v))
    if isinstance(v, set | frozenset):
        return ("set", frozenset(rich_norm(x) for x in v))
    if isinstance(v, dict):
        return ("dict", frozenset((rich_norm(k), rich_norm(x)) for k, x in v.items()))
    if dataclasses.is_dataclass(v):
        return ("dc", type(v).__qualname__,
                tuple((f.name, rich_norm(getattr(v, f.name))) for f in dataclasses.fields(v)))
    raise AssertionError(type(v))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(hashables, rich_values), min_size=2, max_size=40))
def test_no_collisions_over_every_accepted_type(batch: list[Any]) -> None:
    """Equal fingerprints <=> equal values, with sets, bytes, paths, enums and dataclasses."""
    by_fp: dict[str, set[Any]] = {}
    for v in batch:
        by_fp.setdefault(fingerprint(v), set()).add(rich_norm(v))
    assert all(len(group) == 1 for group in by_fp.values())
    assert len(by_fp) == len({rich_norm(v) for v in batch})


@settings(max_examples=200, deadline=None)
@given(st.sets(st.one_of(st.text(max_size=4), st.integers(), st.binary(max_size=3)), max_size=8))
def test_set_members_are_sorted_whatever_the_insertion_order(members: set[Any]) -> None:
    forward, backward = set(), set()
    ordered = sorted(members, key=repr)
    for m in ordered:
        forward.add(m)
    for m in reversed(ordered):
        backward.add(m)
    assert canonical_bytes(forward) == canonical_bytes(backward)
    assert canonical_bytes(frozenset(members)) == canonical_bytes(members)


def test_every_enum_member_has_its_own_id() -> None:
    members = [*Suit, *Rank, *Level]
    ids = {fingerprint(m) for m in members}
    assert len(ids) == len(members) == 8
    # a member is neither its value nor the same-valued member of another enum
    assert fingerprint(Suit.HEARTS) not in {fingerprint(1), fingerprint(Rank.HEARTS)}
    assert fingerprint(Level.ONE) != fingerprint(1)
    assert fingerprint(Suit.JOKER) != fingerprint(None)


def test_plausible_look_alikes_all_differ() -> None:
    look_alikes = [
        1, 1.0, True, "1", b"1", PurePosixPath("1"), Suit.HEARTS, Level.ONE,
        [1], {1}, {"1": 1}, {1: 1}, Box(1), Crate(1), Hooked(1), {"x": 1},
        0, 0.0, -0.0, False, None, "", b"", [], set(), {}, Hooked(None),
    ]  # fmt: skip
    ids = [fingerprint(v) for v in look_alikes]
    assert len(set(ids)) == len(look_alikes)


def test_documented_equalities() -> None:
    """Where the encoding deliberately gives one id: tuples are lists (they do not
    survive a JSON round trip of the manifest), frozensets are sets, bytearrays are
    bytes, numpy values are their Python equivalents."""
    assert fingerprint((1,)) == fingerprint([1])
    assert fingerprint(frozenset({1})) == fingerprint({1})
    assert fingerprint(bytearray(b"1")) == fingerprint(b"1")
    assert fingerprint(np.int64(1)) == fingerprint(1)
    assert fingerprint(np.array([1.0])) == fingerprint([1.0])


# ------------------------------------------------------------------ errors and nesting


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (math.nan, "at the top level"),
        ({"lr": math.nan}, "at 'params.lr'"),
        ({"s": {math.nan}}, "at 'params.s'"),
        ({"d": {math.nan: 1}}, "at 'params.d'"),
        ({"d": {1: math.inf}}, "at 'params.d.1'"),
        ({"d": {(1, "a"): -math.inf}}, "at \"params.d.(1, 'a')\""),
        ({"d": {"k": math.nan, 2: 0}}, "at 'params.d.k'"),
        ({"d": {Rank.SPADES: math.nan}}, "at 'params.d.<Rank.SPADES: 2>'"),
        ({"d": {PurePosixPath("p"): math.nan}}, "at \"params.d.PurePosixPath('p')\""),
        ({"d": {None: math.nan}}, "at 'params.d.None'"),
        ({"b": Box(math.nan)}, "at 'params.b.x'"),
        ({"h": Hooked([0, math.nan])}, "at 'params.h[1]'"),
        ({"e": [enum.Enum("Bad", {"NAN": math.nan}).NAN]}, "at 'params.e[0]'"),  # type: ignore[attr-defined]
        ({"a": np.array([[1.0], [math.nan]])}, "at 'params.a[1][0]'"),
    ],
)
def test_non_finite_message_names_where(value: Any, where: str) -> None:
    path = "" if where == "at the top level" else "params"
    with pytest.raises(CanonicalizationError) as exc:
        canonical_bytes(value, path=path)
    bad = repr(float(str(exc.value).split(" ")[0]))
    assert str(exc.value) == (
        f"{bad} {where} has no canonical encoding (NaN and infinity cannot identify a run); "
        "use a finite number or a string such as 'nan'"
    )
    with pytest.raises(CanonicalizationError, match=re.escape(where)):
        fingerprint(value, path=path)


def test_unsupported_type_message() -> None:
    class Weird:
        pass

    with pytest.raises(CanonicalizationError) as exc:
        canonical_bytes({"w": [Weird()]})
    assert str(exc.value) == (
        f"value of type {Weird.__module__}.{Weird.__qualname__} at 'w[0]' has no canonical "
        "encoding; use None, bool, int, float, str, list, tuple, dict, set, bytes, a dataclass "
        "or a numpy value"
    )
    with pytest.raises(CanonicalizationError, match="at the top level"):
        canonical_bytes(Weird())
    with pytest.raises(CanonicalizationError, match=r"builtins\.type"):
        canonical_bytes(Box)  # a dataclass class is not a dataclass value
    with pytest.raises(CanonicalizationError, match="complex"):
        canonical_bytes(np.complex128(1 + 2j))  # numpy converts it to a Python complex


class Deep(enum.Enum):
    V = (0,)


# a value whose deepest part lies `extra` levels below it, for each place the encoder descends
BOTTOMS: dict[str, tuple[Any, int]] = {
    "list": ([0], 1),
    "tuple": ((0,), 1),
    "dict": ({"a": 0}, 1),
    "non-str key": ({(0,): "v"}, 2),
    "non-str dict value": ({1: [0]}, 2),
    "str key among non-str keys": ({1: 0, "k": [0]}, 2),
    "set": ({(0,)}, 2),
    "enum": (Deep.V, 2),
    "dataclass": (Box([0]), 2),
    "hook": (Hooked([0]), 2),
    "numpy scalar": (np.int64(0), 1),
    "numpy array": (np.array([0]), 2),
    "scalar": (0, 0),
}


def _under(n: int, v: Any) -> Any:
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize("kind", list(BOTTOMS))
def test_nesting_limit_is_exactly_200_levels(kind: str) -> None:
    bottom, extra = BOTTOMS[kind]
    canonical_bytes(_under(200 - extra, bottom))  # the deepest part at level 200
    with pytest.raises(CanonicalizationError) as exc:
        canonical_bytes(_under(201 - extra, bottom))
    msg = str(exc.value)
    assert msg.startswith("value at '[0][0]") or kind in ("scalar",)
    assert msg.endswith("is nested more than 200 levels deep (is it self-referencing?); "
                        "flatten it")


def test_deep_nesting_message_names_the_path() -> None:
    with pytest.raises(CanonicalizationError) as exc:
        canonical_bytes({"a": _under(200, 0)}, path="params")
    assert str(exc.value) == (
        f"value at 'params.a{'[0]' * 200}' is nested more than 200 levels deep "
        "(is it self-referencing?); flatten it"
    )


def test_self_references_are_errors_not_recursion_errors() -> None:
    loop_dict: dict[str, Any] = {}
    loop_dict["self"] = loop_dict
    loop_map: dict[Any, Any] = {}
    loop_map[1] = loop_map
    box = Box(None)
    object.__setattr__(box, "x", box)
    hook = Hooked(None)
    hook.payload = hook
    for value in (loop_dict, loop_map, box, hook, _under(5000, 0)):
        with pytest.raises(CanonicalizationError, match="nested more than 200 levels"):
            canonical_bytes(value)


def test_without_a_path_errors_are_at_the_top_level() -> None:
    for encode in (canonical_bytes, fingerprint):
        with pytest.raises(CanonicalizationError, match=r"^nan at the top level has no"):
            encode(math.nan)
        with pytest.raises(CanonicalizationError, match=r"^value at '\[0\]"):
            encode(_under(300, 0))
