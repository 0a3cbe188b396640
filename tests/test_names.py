"""User-given names never escape their folder."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab import InvalidNameError
from metalab._internal._names import check_name, safe_experiment_id


@given(st.text(min_size=1, max_size=120))
def test_experiment_folder_is_one_safe_component(experiment_id: str) -> None:
    folder = safe_experiment_id(experiment_id)
    assert folder and "/" not in folder and "\\" not in folder and "\x00" not in folder
    assert not folder.startswith(".")
    assert os.path.basename(folder) == folder


def test_experiment_folder_examples() -> None:
    assert safe_experiment_id("my_exp:1.0") == "my_exp_1.0"
    assert safe_experiment_id("../evil:1") == "_._evil_1"
    assert safe_experiment_id("données:1") == "données_1"  # letters stay readable


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "a\x00b", ".hidden", "x" * 201])
def test_bad_names_are_refused_with_advice(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="use letters"):
        check_name(bad, "artifact name")


@given(st.text(min_size=1, max_size=50))
def test_accepted_names_stay_in_their_folder(name: str) -> None:
    try:
        check_name(name)
    except InvalidNameError:
        return
    joined = os.path.normpath(os.path.join("/base", name))
    assert os.path.dirname(joined) == "/base"
