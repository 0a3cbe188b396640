"""LocatorInfo is immutable all the way down: its query cannot be changed after parsing."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab.store.locator import LocatorInfo, parse_locator

_keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_values = st.text(min_size=0, max_size=8).filter(lambda v: "\x00" not in v)


def test_query_of_a_parsed_locator_refuses_changes():
    info = parse_locator("postgresql://u:secret@h:5432/db?file_root=/data&sslmode=require")
    with pytest.raises(TypeError):
        info.query["file_root"] = "/elsewhere"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.host = "other"  # type: ignore[misc]
    assert info.query["file_root"] == "/data"


def test_the_callers_dict_is_copied():
    query = {"file_root": "/data"}
    info = LocatorInfo("postgresql", "h", 5432, "u", None, "/db", query)
    query["file_root"] = "/changed"
    assert info.query == {"file_root": "/data"}


def test_with_query_gives_a_new_locator_and_keeps_the_old():
    info = parse_locator("postgresql://u@h/db?schema=s")
    other = info.with_query(schema="t", file_root="/x")
    assert info.query == {"schema": "s"}
    assert other.query == {"schema": "t", "file_root": "/x"}
    assert {info: 1, other: 2}[parse_locator("postgresql://u@h/db?schema=s")] == 1


@given(st.dictionaries(_keys, _values, max_size=4))
def test_pickle_copy_equality_and_hash_survive(query):
    info = LocatorInfo("postgresql", "host", 5432, "user", "p@ss word", "/db", query)
    for twin in (pickle.loads(pickle.dumps(info)), copy.deepcopy(info), copy.copy(info),
                 parse_locator(info.to_uri(hide_password=False))):
        assert twin == info and hash(twin) == hash(info)
        assert dict(twin.query) == query
