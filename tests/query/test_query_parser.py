"""The filter language: parsing, error positions, close-name suggestions, keyword form."""

from __future__ import annotations

import pytest

from metalab import QueryError, QuerySyntaxError, UnknownFieldError, ValidationError
from metalab.query import build_query, from_keywords, parse
from metalab.query._ast import (
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
from metalab.store import FileStore


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


# ------------------------------------------------------------ limits: depth, width, long lists
def _no_fallback(caplog: pytest.LogCaptureFixture) -> None:
    """The catalog answered itself (a fallback to the scan would hide an SQL failure)."""
    assert "catalog unavailable" not in caplog.text


@pytest.mark.parametrize(("text", "pos"), [
    ("(" * 400 + "params.lr = 1" + ")" * 400, 100),
    ("not " * 1000 + "params.lr = 1", 400),
    ("params.lr = 1 or " + "(not " * 60 + "params.lr = 2" + ")" * 60, 17 + 50 * 5),
])
def test_nesting_deeper_than_the_limit_is_a_syntax_error_at_its_position(
    text: str, pos: int
) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(text)
    err = info.value
    assert err.position == pos
    assert "100 levels" in str(err)
    assert str(err).splitlines()[-1].index("^") - 2 == pos


def test_nesting_at_the_limit_gives_the_same_answer_in_every_engine(
    fstore: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    from metalab.store._base import Store

    caplog.set_level("INFO", logger="metalab.store.catalog")
    # 100 levels, each '(' adding an 'or' and an 'and' node: the deepest tree text makes
    def nested(parens: int, nots: int) -> str:
        inner = "params.depth = 1"
        for i in range(parens):
            inner = f"(params.depth = {i % 5} or metrics.score < 0 and {inner})"
        return "not " * nots + inner + " and tags contains 'even'"

    for parens, nots in ((10, 5), (100, 0), (50, 50)):
        text = nested(parens, nots)
        expected = Store.query_runs(fstore, None, text)
        assert len(expected) == (2 if nots % 2 == 0 else 8)
        assert fstore.query_runs(None, text) == expected
        assert fstore.query_runs(None, text, columns=["params.depth"]) == Store.query_runs(
            fstore, None, text, columns=["params.depth"])
        if parens == 10:
            # (SQLite's parser takes about a dozen such levels: deeper filters are scanned)
            _no_fallback(caplog)
    with pytest.raises(QuerySyntaxError):
        fstore.query_runs(None, nested(101, 0))
    with pytest.raises(QuerySyntaxError):
        fstore.query_runs(None, nested(50, 51))


def test_a_filter_tree_deeper_than_the_limit_is_refused_cleanly(fstore: FileStore) -> None:
    from metalab.query._ast import MAX_NODE_DEPTH, Query

    node: Not | Compare = Compare(Field("params", "depth"), "=", 1)
    for _ in range(5000):
        node = Not(node)
    with pytest.raises(QueryError, match=str(MAX_NODE_DEPTH)):
        build_query(node)
    with pytest.raises(QueryError, match=str(MAX_NODE_DEPTH)):
        Query(node)
    with pytest.raises(QueryError):
        fstore.query_runs(None, node)


@pytest.mark.parametrize("joiner", ["and", "or"])
def test_ten_thousand_terms_give_the_same_answer_in_every_engine(
    fstore: FileStore, caplog: pytest.LogCaptureFixture, joiner: str
) -> None:
    from metalab.store._base import Store

    caplog.set_level("INFO", logger="metalab.store.catalog")
    op = "!=" if joiner == "and" else "="
    text = f" {joiner} ".join(f"params.depth {op} {i}" for i in range(3, 10_003))
    query = build_query(text)
    expected = Store.query_runs(fstore, None, query)
    assert len(expected) == (12 if joiner == "and" else 8)  # depth 0-2 for and; 3-4 for or
    assert fstore.query_runs(None, query) == expected
    negated = build_query(Not(query.where), columns=["params.depth"])
    assert fstore.query_runs(None, negated) == Store.query_runs(fstore, None, negated)
    _no_fallback(caplog)


def _long_list_store(tmp_path: object) -> FileStore:
    from query_support import make_doc, write_doc

    store = FileStore(f"{tmp_path}/big", experiment_id="q:1")
    odd: list[object] = [2**62 + 1, 2.5, -0.0, "7", True, False, "é", "", None, [1], 1e300,
                         float(2**53)]
    for i in range(300):
        doc = make_doc(i)
        doc["params"]["v"] = odd[i // 3 % len(odd)] if i % 3 == 0 else (i if i % 2 else f"s{i}")
        write_doc(store, doc)
    return store


def test_a_50000_value_in_list_is_fast_and_answers_as_the_scan(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    from metalab.store._base import Store

    caplog.set_level("INFO", logger="metalab.store.catalog")
    store = _long_list_store(tmp_path)
    store.query_runs(None, "params.v = 1")  # (the catalog is built once)
    values: list[object] = [*range(1, 25_000, 4), *(f"s{i}" for i in range(0, 25_000, 4)),
                            *(i + 0.5 for i in range(12_000)), "1", "true", "a\0b"]
    text = f"params.v in ({', '.join(map(repr, values))}, true, 1e999, -0.0, {2**62 + 1})"
    start = time.process_time()  # (CPU time: other work on a shared machine does not count)
    got = store.query_runs(None, text, columns=["params.v"])
    elapsed = time.process_time() - start
    assert elapsed < 2.0, elapsed  # 13 s with one parameter per value
    _no_fallback(caplog)
    assert got == Store.query_runs(store, None, text, columns=["params.v"])
    # the same kind and an equal value: 1 = 1.0, never 1 = true or 1 = "1"
    numbers = {v for v in values if isinstance(v, int | float)} | {2**62 + 1, 0}
    strings = {v for v in values if isinstance(v, str)}

    def member(v: object) -> bool:
        if isinstance(v, bool):
            return v is True
        if isinstance(v, int | float):
            return v in numbers
        return isinstance(v, str) and v in strings

    expected = [d["run_id"] for d in Store.query_runs(store, None, "", columns=["params.v"])
                if member(d["params"].get("v"))]
    assert [d["run_id"] for d in got] == expected
    assert {repr(d["params"]["v"]) for d in got} >= {
        repr(2**62 + 1), "2.5", "-0.0", "True", "1", "'s4'"}
    assert not {"'7'", "False", repr(float(2**53)), "1e+300", "3", "'s2'"} & {
        repr(d["params"]["v"]) for d in got}
    # negation, every kind, NaN (equals nothing), through the keyword form too
    for where in (
        f"params.v not in ({', '.join(map(repr, values))}, '', 1e300)",
        build_query(keywords={"params.v": [float("nan"), 9007199254740992, "é", False,
                                           *range(1, 30_000, 3)]}).where,
        build_query(keywords={"params.v": [float("nan")]}).where,
    ):
        assert store.query_runs(None, where) == Store.query_runs(store, None, where)
    _no_fallback(caplog)


def test_postgres_answers_long_lists_long_chains_and_deep_nesting_as_the_scan(
    tmp_path: object, pg_factory: object, fstore: FileStore
) -> None:
    import time
    from collections.abc import Callable
    from typing import Any, cast

    from metalab.store._base import Store

    store = _long_list_store(tmp_path)
    make = cast(Callable[[FileStore], Any], pg_factory)
    pg = make(store)
    values = [*range(1, 25_000, 4), *(f"s{i}" for i in range(0, 25_000, 4)),
              *(i + 0.5 for i in range(12_000))]
    inlist = f"params.v in ({', '.join(map(repr, values))}, true, -0.0, {2**62 + 1})"
    chain = " and ".join(f"params.depth != {i}" for i in range(3, 10_003))
    deep = "params.depth = 1"
    for i in range(100):
        deep = f"(params.depth = {i % 5} or metrics.score < 0 and {deep})"
    start = time.perf_counter()
    got = pg.query_runs(None, inlist, columns=["params.v"])
    assert time.perf_counter() - start < 5.0  # (one array parameter per kind of value)
    assert got == Store.query_runs(store, None, inlist, columns=["params.v"])
    small = make(fstore)  # (20 runs: 10,000 terms cost the server ~15 us a run)
    half = "params.depth = 1"
    for i in range(50):
        half = f"(params.depth = {i % 5} or metrics.score < 0 and {half})"
    either = " or ".join(f"params.depth = {i}" for i in range(3, 2_003))
    for text in (chain, either, deep, "not " * 50 + half + " and tags contains 'even'"):
        got = small.query_runs(None, text, columns=["params.depth"])
        assert got == Store.query_runs(fstore, None, text, columns=["params.depth"]), text[:40]
        assert 0 < len(got) < 20


def test_a_lone_surrogate_is_a_syntax_error_at_its_position(fstore: FileStore) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse("params.name in ('a', '\ud800')")
    assert info.value.position == 22
    str(info.value).encode("utf-8")  # the message itself can be printed
    with pytest.raises(QueryError):
        fstore.query_runs(None, build_query(keywords={"params.name": "\ud800"}))
    with pytest.raises(QuerySyntaxError):
        fstore.query_runs(None, None, columns=["params.\ud800"])
