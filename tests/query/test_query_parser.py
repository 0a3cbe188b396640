"""The filter language: parsing, error positions, close-name suggestions, keyword form."""

from __future__ import annotations

import pytest

from metalab import QueryError, QuerySyntaxError, UnknownFieldError, ValidationError
from metalab.store import FileStore
from metalab.store._query import build_query, from_keywords, parse
from metalab.store._query._ast import (
    And,
    Between,
    Compare,
    Contains,
    Field,
    In,
    IsNull,
    Not,
    Or,
    StartsWith,
)


def test_a_full_query_parses_to_the_expected_tree() -> None:
    node = parse('params.lr < 0.01 and (metrics.score >= 0.9 or not tags contains "x")')
    assert node == And((
        Compare(Field("params", "lr"), "<", 0.01),
        Or((Compare(Field("metrics", "score"), ">=", 0.9),
            Not(Contains(Field("tags"), "x")))),
    ))


@pytest.mark.parametrize(("text", "expected"), [
    ("params.x in (1, 'a', true)", In(Field("params", "x"), (1, "a", True))),
    ("params.x not in (1)", In(Field("params", "x"), (1,), negate=True)),
    ("params.x between -1 and 2.5e1", Between(Field("params", "x"), -1, 25.0)),
    ("params.x not between 1 and 2", Not(Between(Field("params", "x"), 1, 2))),
    ('params.name startswith "res"', StartsWith(Field("params", "name"), "res")),
    ("derived.acc is not null", IsNull(Field("derived", "acc"), negate=True)),
    ("metrics.m IS NULL", IsNull(Field("metrics", "m"))),
    ("0.5 < params.lr", Compare(Field("params", "lr"), ">", 0.5)),
    ("params.x == 1", Compare(Field("params", "x"), "=", 1)),
    ("params.x <> 1", Compare(Field("params", "x"), "!=", 1)),
    ('params."odd name" = "it\'s"', Compare(Field("params", "odd name"), "=", "it's")),
    ("params.opt.lr = 1", Compare(Field("params", "opt.lr"), "=", 1)),
    ("param.lr = 1", Compare(Field("params", "lr"), "=", 1)),
    ("status = 'success'", Compare(Field("status"), "=", "success")),
    ("", None),
])
def test_operators(text: str, expected: object) -> None:
    node = parse(text)
    if expected is None:
        assert type(node).__name__ == "TrueNode"
    else:
        assert node == expected


def test_times_are_instants() -> None:
    a = parse('started_at >= "2026-01-01"')
    b = parse('started_at >= "2026-01-01T00:00:00Z"')
    c = parse('started_at >= "2026-01-01T01:00:00+01:00"')
    assert a == b == c


@pytest.mark.parametrize(("text", "pos"), [
    ("params.lr <", 11),
    ("params.lr < 0.01 and", 20),
    ("(params.lr = 1", 14),
    ("params.lr = 1 metrics.x = 2", 14),
    ('params.name = "open', 14),
    ("params.lr ~ 1", 10),
    ("params.x in 1", 12),
])
def test_syntax_errors_point_at_the_position(text: str, pos: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(text)
    err = info.value
    assert err.position == pos
    caret_line = str(err).splitlines()[-1]
    assert caret_line.index("^") - 2 == pos  # two spaces of indent
    assert isinstance(err, ValidationError)


@pytest.mark.parametrize("text", [
    "params.x = null", "status = 3", "tags = 'a'", 'started_at > "yesterday"',
    "duration_ms startswith 'a'", "params startswith 'a'", "tags contains 1",
])
def test_literals_that_can_never_match_are_errors(text: str) -> None:
    with pytest.raises(QueryError):
        parse(text)


def test_unknown_namespace_suggests_the_right_one() -> None:
    with pytest.raises(UnknownFieldError) as info:
        parse("parms.lr < 1")
    assert "params" in info.value.suggestions[0]
    assert info.value.position == 0


def test_unknown_field_lists_close_names_from_the_store(fstore: FileStore) -> None:
    with pytest.raises(UnknownFieldError) as info:
        fstore.query_runs(where="metrics.score > 0 and params.lrr < 1")
    err = info.value
    assert err.field == "params.lrr"
    assert "params.lr" in err.suggestions
    assert err.position == 22
    assert "params.depth" in str(err)


def test_keyword_form_equals_string_form(fstore: FileStore) -> None:
    kw = from_keywords({"status": "success", "params.lr": 0.01, "tags": "even",
                        "params.depth": [1, 2], "derived.x": None})
    text = parse('status = "success" and params.lr = 0.01 and tags contains "even" '
                 "and params.depth in (1, 2) and derived.x is null")
    assert kw == text
    a = fstore.query_runs(where=build_query(keywords={"status": "success", "params.lr": 0.01}))
    b = fstore.query_runs(where='status = "success" and params.lr = 0.01')
    assert a == b and len(a) == 5


def test_order_and_limit_parts() -> None:
    q = build_query("", columns="params.lr, metrics", order_by="-metrics.score, params.lr asc",
                    limit=3)
    assert q.columns == (Field("params", "lr"), Field("metrics"))
    assert q.order == ((Field("metrics", "score"), True), (Field("params", "lr"), False))
    with pytest.raises(QueryError):
        build_query(limit=-1)
    with pytest.raises(QueryError):
        build_query(order_by="tags")
