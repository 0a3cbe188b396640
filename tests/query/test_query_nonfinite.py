"""Stored non-finite numbers (``"Infinity"``, ``"-Infinity"``, ``"NaN"`` in metrics and
derived values) are numbers to every query engine, with the scan's answers.

In the run files a metric or derived value that is an infinity or NaN is the
JSON text ``"Infinity"`` / ``"-Infinity"`` / ``"NaN"``; the engines read it as
the float: ``inf`` is above every finite number, ``NaN`` compares false with
everything except by ``!=`` (as in Python), sorts after ``+inf`` (first when
descending) and is not null.  The same texts in params stay texts.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_support import make_doc, write_doc
from test_query_engines import answer, fill

from metalab.query import build_query
from metalab.query._ast import (
    And,
    Between,
    Compare,
    Contains,
    Field,
    In,
    IsNull,
    Node,
    Not,
    Or,
    Query,
    StartsWith,
)
from metalab.store import FileStore
from metalab.store._base import Store

TOKENS = ["Infinity", "-Infinity", "NaN"]
STORED = st.sampled_from([*TOKENS, 0, 1, -2.5, 1e308, -1e308, "a", "Inf", True, None])
LITERALS = st.sampled_from([math.inf, -math.inf, math.nan, 0, 1, -2.5, 1e308, -1e308,
                            *TOKENS, "a", "I", True])
FIELDS = [Field("params", "p"), Field("metrics", "m"), Field("metrics", "n"),
          Field("derived", "d")]


@pytest.fixture
def nf_store(tmp_path: Any) -> FileStore:
    store = FileStore(str(tmp_path / "store"), experiment_id="q:1")
    for i, value in enumerate(["Infinity", "-Infinity", "NaN", 1.5, "text", None]):
        write_doc(store, make_doc(i, params={"p": value}, metrics={"m": value}))
        if value is not None:
            store.put_derived(f"r{i:03d}", {"d": value})
    return store


def _engine(store: FileStore, pg_factory: Any, engine: str) -> Any:
    if engine == "scan":
        class Scan:
            def query_runs(self, *args: Any, **kwargs: Any) -> Any:
                return Store.query_runs(store, *args, **kwargs)
        return Scan()
    if engine == "catalog":
        return store
    pg = pg_factory(store)

    def no_fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the query fell back to the files instead of SQL")

    pg._files.query_runs = no_fallback
    return pg


@pytest.mark.parametrize("engine", ["scan", "catalog", "postgres"])
def test_infinite_and_nan_metrics_are_numbers(nf_store: FileStore, pg_factory: Any,
                                              engine: str) -> None:
    store = _engine(nf_store, pg_factory, engine)

    def ids(q: str, **kw: Any) -> list[str]:
        return [d["run_id"] for d in store.query_runs(where=q, **kw)]

    for ns in ("metrics.m", "derived.d"):
        assert ids(f"{ns} > 1e308") == ["r000"], ns
        assert ids(f"{ns} >= 1e308") == ["r000"], ns
        assert ids(f"{ns} < -1e308") == ["r001"], ns
        assert ids(f"{ns} > 1e308 or {ns} = 7") == ["r000"], ns  # (not a top-level conjunct)
        assert ids(f"{ns} = 1e999") == ["r000"], ns
        assert ids(f"{ns} = -1e999") == ["r001"], ns
        assert ids(f"{ns} between 0 and 1e999") == ["r000", "r003"], ns
        assert ids(f"{ns} in (1e999, 1.5)") == ["r000", "r003"], ns
        assert ids(f"{ns} not in (1.5)") == ["r000", "r001", "r002", "r004"], ns
        assert ids(f"{ns} != 1.5") == ["r000", "r001", "r002"], ns
        assert ids(f"{ns} >= 0 or {ns} < 0") == ["r000", "r001", "r003"], ns  # NaN: neither
        assert ids(f"not ({ns} >= 0 or {ns} < 0) and {ns} is not null") == ["r002", "r004"], ns
        assert ids(f"{ns} is null") == ["r005"], ns
        assert ids(f"{ns} = 'Infinity'") == [], ns  # a number, not a text
        assert ids(f"{ns} startswith 'Inf'") == [], ns
        assert ids(f"{ns} contains 'NaN'") == [], ns
        assert ids(f"{ns} = 'text'") == ["r004"], ns
        assert ids(None, order_by=[ns], limit=4) == ["r001", "r003", "r000", "r002"], ns
        assert ids(None, order_by=["-" + ns], limit=4) == ["r002", "r000", "r003", "r001"], ns
    # the same texts in params are texts
    assert ids("params.p = 'Infinity'") == ["r000"]
    assert ids("params.p > 1e308") == []
    assert ids("params.p startswith 'Inf'") == ["r000"]


@pytest.mark.parametrize("engine", ["scan", "catalog", "postgres"])
def test_answers_hold_the_stored_json_form(nf_store: FileStore, pg_factory: Any,
                                           engine: str) -> None:
    """Query answers are documents: the values as the files hold them."""
    store = _engine(nf_store, pg_factory, engine)
    got = store.query_runs(columns=["metrics.m", "derived", "params.p"], limit=4)
    assert [d["metrics"] for d in got] == [{"m": "Infinity"}, {"m": "-Infinity"}, {"m": "NaN"},
                                           {"m": 1.5}]
    assert [d["derived"] for d in got] == [{"d": "Infinity"}, {"d": "-Infinity"}, {"d": "NaN"},
                                           {"d": 1.5}]
    assert [d["params"]["p"] for d in got] == ["Infinity", "-Infinity", "NaN", 1.5]
    whole = store.query_runs(where="metrics.m > 1e308")
    assert [d["metrics"] for d in whole] == [{"m": "Infinity"}]


def test_postgres_field_index_finds_infinite_metrics(nf_store: FileStore,
                                                     pg_factory: Any) -> None:
    pg = _engine(nf_store, pg_factory, "postgres")
    pg._index.create_field_index("metrics", "m")
    assert [d["run_id"] for d in pg.query_runs(where="metrics.m > 1e308")] == ["r000"]
    assert [d["run_id"] for d in pg.query_runs(where="metrics.m <= -1")] == ["r001"]
    assert [d["run_id"] for d in pg.query_runs(where="metrics.m > 1")] == ["r000", "r003"]
    catalog = {(r["namespace"], r["name"], r["type"]): r["count"]
               for r in pg.field_catalog("q:1")}
    assert catalog[("metrics", "m", "number")] == 4
    assert catalog[("derived", "d", "number")] == 4
    assert catalog[("params", "p", "string")] == 4


@st.composite
def _stores(draw: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    runs = []
    for i in range(draw(st.integers(1, 10))):
        metrics = {"m": draw(STORED)} if draw(st.booleans()) else {}
        metrics["n"] = draw(STORED)
        doc = make_doc(i, params={"p": draw(STORED)}, metrics=metrics)
        runs.append((doc, {"d": draw(STORED)} if draw(st.booleans()) else None))
    return runs


@st.composite
def _filters(draw: Any, depth: int = 2) -> Node:
    if depth and draw(st.integers(0, 2)) == 0:
        items = tuple(draw(st.lists(_filters(depth - 1), min_size=1, max_size=3)))
        return draw(st.sampled_from([And(items), Or(items), Not(items[0])]))
    field = draw(st.sampled_from(FIELDS))
    kind = draw(st.sampled_from(["cmp", "cmp", "in", "between", "starts", "contains", "null"]))
    if kind == "cmp":
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])),
                       draw(LITERALS))
    if kind == "in":
        return In(field, tuple(draw(st.lists(LITERALS, min_size=1, max_size=3))),
                  draw(st.booleans()))
    if kind == "between":
        return Between(field, draw(LITERALS), draw(LITERALS))
    if kind == "starts":
        return StartsWith(field, draw(st.sampled_from(["", "I", "Inf", "N", "-"])))
    if kind == "contains":
        return Contains(field, draw(LITERALS))
    return IsNull(field, draw(st.booleans()))


@st.composite
def _queries(draw: Any) -> Query:
    columns = draw(st.one_of(st.none(), st.lists(st.sampled_from(
        ["params.p", "metrics.m", "metrics", "derived.d", "derived"]), max_size=3, unique=True)))
    order = draw(st.lists(st.sampled_from(["metrics.m", "-metrics.m", "derived.d", "-derived.d",
                                           "params.p", "-metrics.n"]), max_size=2))
    q = build_query(None, columns=columns, order_by=order,
                    limit=draw(st.one_of(st.none(), st.integers(0, 5))))
    return Query(draw(_filters()), q.columns, q.order, q.limit)


@settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(runs=_stores(), qs=st.lists(_queries(), min_size=8, max_size=8))
def test_engines_agree_on_non_finite_values(pg_factory: Any, runs: Any,
                                            qs: list[Query]) -> None:
    fs, folder = fill(runs)
    try:
        pg = pg_factory(fs)

        def no_fallback(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the query fell back to the files instead of SQL")

        pg._files.query_runs = no_fallback
        for q in qs:
            scanned = answer(fs, q, scan=True)
            assert answer(fs, q) == scanned, q
            assert answer(pg, q) == scanned, q
    finally:
        shutil.rmtree(folder)
