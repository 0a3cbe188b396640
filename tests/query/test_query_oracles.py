"""Independent oracles: every expected answer here is written out by hand.

The engines share helpers (time conversion, tag normalisation, the predicate
re-check of the catalog), so comparing one engine with another cannot see a
fault in a shared helper.  These tests give absolute answers instead: known
epochs, the lost rule at its boundary, time filters and boolean comparisons
on the scan, the FileStore catalog and PostgreSQL, and the reference
evaluator (``_eval``) node by node.

Tests that need the PostgreSQL server have ``postgres`` in their name (the
mutation run of scripts/mutation.sh leaves them out).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from query_support import make_doc, write_doc

from metalab import UnknownFieldError
from metalab.query import _eval, _liveness
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
    TrueNode,
)
from metalab.query._eval import (
    evaluate,
    micros_to_iso,
    predicate,
    project,
    run_query,
    sort_documents,
)
from metalab.query._fields import known_fields
from metalab.query._liveness import lost_cutoff, parse_time, status_at_cutoff
from metalab.store import FileStore
from metalab.store._base import Store

S = 1_000_000  # microseconds per second
BILLION = 10**15  # 2001-09-09T01:46:40Z in microseconds since the epoch
P = Field("params", "x")


# ---------------------------------------------------------------- time conversion


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000000Z", 0),
        ("1970-01-01", 0),
        ("1970-01-01T00:00:01Z", S),
        ("1969-12-31T23:59:59.999999Z", -1),
        ("2001-09-09T01:46:40Z", BILLION),
        ("2001-09-09T01:46:40.000001Z", BILLION + 1),
        ("2001-09-09T01:46:40", BILLION),  # no zone: UTC
        ("2001-09-09T03:46:40+02:00", BILLION),
        ("2001-09-08T20:46:40-05:00", BILLION),
        ("2038-01-19T03:14:08Z", 2**31 * S),
        ("2000-02-29T00:00:00Z", 951_782_400 * S),
        ("1900-01-01T00:00:00Z", -2_208_988_800 * S),
    ],
)
def test_parse_time_at_known_epochs(text: str, micros: int) -> None:
    assert parse_time(text) == micros


@pytest.mark.parametrize("value", [None, "", "yesterday", "2001-13-01", 12, 1.5, True, ["x"]])
def test_parse_time_of_a_non_time_is_none(value: Any) -> None:
    assert parse_time(value) is None


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (BILLION, "2001-09-09T01:46:40.000000Z"),
        (BILLION + 123_456, "2001-09-09T01:46:40.123456Z"),
        (2**31 * S, "2038-01-19T03:14:08.000000Z"),
        (-2_208_988_800 * S, "1900-01-01T00:00:00.000000Z"),
    ],
)
def test_micros_to_iso_at_known_epochs(micros: int, text: str) -> None:
    assert micros_to_iso(micros) == text
    assert parse_time(text) == micros


def test_micros_to_iso_of_none() -> None:
    assert micros_to_iso(None) is None


def test_lost_cutoff_is_now_minus_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)
    assert lost_cutoff(now, 300) == BILLION - 300 * S
    assert lost_cutoff(now, 0.5) == BILLION - 500_000
    assert lost_cutoff(now, 1e-6) == BILLION - 1
    assert lost_cutoff(now, 0) == BILLION  # 0 is a limit, not "use the default"
    assert lost_cutoff(now.astimezone(timezone(timedelta(hours=3))), 300) == BILLION - 300 * S
    monkeypatch.setenv("METALAB_LOST_AFTER", "42")
    assert lost_cutoff(now) == BILLION - 42 * S
    assert lost_cutoff(now, 300) == BILLION - 300 * S
    # without `now`: the current time
    before = time.time_ns() // 1000
    got = lost_cutoff(lost_after=10)
    after = time.time_ns() // 1000
    assert before - 10 * S <= got <= after - 10 * S


# ------------------------------------------------------------- lost rule, engines

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


class _FrozenClock(datetime):
    """``datetime`` whose ``now()`` is :data:`NOW` (the clock of the lost rule)."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return NOW if tz is None else NOW.astimezone(tz)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_liveness, "datetime", _FrozenClock)
    monkeypatch.setenv("METALAB_LOST_AFTER", "300")


def _ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


# run -> (document changes, the status a reader sees with a 300 s limit)
LIVENESS: dict[str, tuple[dict[str, Any], str]] = {
    "h0": ({"heartbeat_at": _ago(0)}, "running"),
    "h299": ({"heartbeat_at": _ago(299)}, "running"),
    "h300": ({"heartbeat_at": _ago(300)}, "running"),  # not older than the limit
    "h300+1us": ({"heartbeat_at": _ago(300.000001)}, "lost"),
    "h301": ({"heartbeat_at": _ago(301)}, "lost"),
    "h301-offset": ({"heartbeat_at": (NOW - timedelta(seconds=301)).astimezone(
        timezone(timedelta(hours=-7))).isoformat()}, "lost"),
    "h299-offset": ({"heartbeat_at": (NOW - timedelta(seconds=299)).astimezone(
        timezone(timedelta(hours=5, minutes=30))).isoformat()}, "running"),
    "start299": ({"started_at": _ago(299)}, "running"),  # no heartbeat: the start counts
    "start301": ({"started_at": _ago(301)}, "lost"),
    "hb-garbage": ({"heartbeat_at": "soon", "started_at": _ago(3000)}, "running"),
    "success-old": ({"status": "success", "heartbeat_at": _ago(3000)}, "success"),
    "failed-old": ({"status": "failed", "heartbeat_at": _ago(3000)}, "failed"),
}


def _liveness_store(tmp_path: Any) -> FileStore:
    fs = FileStore(str(tmp_path / "live"), experiment_id="q:1")
    for name, (changes, _) in LIVENESS.items():
        doc = make_doc(0, **{"status": "running", "started_at": _ago(1), **changes})
        doc["run_id"] = name
        write_doc(fs, doc)
    return fs


def _check_liveness(store: Any) -> None:
    expected = {name: status for name, (_, status) in LIVENESS.items()}
    got = {d["run_id"]: d["status"] for d in store.query_runs(columns=["status"])}
    assert got == expected
    for status in ("lost", "running", "success"):
        found = {d["run_id"] for d in store.query_runs(where=Query(Compare(
            Field("status"), "=", status)))}
        assert found == {n for n, s in expected.items() if s == status}, status
    ordered = [d["run_id"] for d in store.query_runs(
        where=Query(TrueNode(), (Field("status"),), ((Field("status"), False),)))]
    assert ordered == sorted(expected, key=lambda n: (expected[n], n))


def test_lost_rule_at_its_boundary_scan_and_catalog(tmp_path: Any, frozen_clock: None) -> None:
    fs = _liveness_store(tmp_path)
    _check_liveness(fs)  # the catalog

    class Scan:
        def query_runs(self, where: Any = None, columns: Any = None) -> Any:
            return Store.query_runs(fs, None, where, columns)

    _check_liveness(Scan())
    assert {n: status_at_cutoff(d, lost_cutoff()) for n, d in
            ((d["run_id"], d) for d in fs.iter_run_documents())} == {
        n: s for n, (_, s) in LIVENESS.items()}


def test_lost_rule_at_its_boundary_postgres(tmp_path: Any, frozen_clock: None,
                                            pg_factory: Any) -> None:
    pg = pg_factory(_liveness_store(tmp_path))

    def no_fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the query fell back to the files instead of SQL")

    pg._files.query_runs = no_fallback
    _check_liveness(pg)


# ------------------------------------------------- time and boolean filters, engines


class _Scan:
    """The in-memory scan of a FileStore (the reference engine)."""

    def __init__(self, fs: FileStore) -> None:
        self.fs = fs

    def query_runs(self, experiment_id: Any = None, where: Any = None, columns: Any = None,
                   order_by: Any = None, limit: Any = None) -> Any:
        return Store.query_runs(self.fs, experiment_id, where, columns, order_by, limit)


def _engine(name: str, fs: FileStore, request: pytest.FixtureRequest) -> Any:
    if name == "scan":
        return _Scan(fs)
    if name == "catalog":
        return fs
    pg = request.getfixturevalue("pg_factory")(fs)

    def no_fallback(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the query fell back to the files instead of SQL")

    pg._files.query_runs = no_fallback
    return pg


ENGINES = ["scan", "catalog", "postgres"]

# run -> (started_at, finished_at) as stored
TIMES: dict[str, tuple[Any, Any]] = {
    "t-epoch": ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z"),
    "t-billion": ("2001-09-09T01:46:40.000000Z", "2001-09-09T01:46:41.5Z"),
    "t-billion-offset": ("2001-09-09T03:46:40+02:00", "2001-09-09T01:46:41.500001Z"),
    "t-billion-naive": ("2001-09-09T01:46:40", None),
    "t-billion+1us": ("2001-09-09T01:46:40.000001Z", "2038-01-19T03:14:08Z"),
    "t-2038": ("2038-01-19T03:14:08Z", "2038-01-19T03:14:07.999999Z"),
    "t-none": (None, None),
}


@pytest.fixture
def timed(tmp_path: Any) -> FileStore:
    fs = FileStore(str(tmp_path / "timed"), experiment_id="q:1")
    for name, (started, finished) in TIMES.items():
        doc = make_doc(0, started_at=started, finished_at=finished)
        doc["run_id"] = name
        write_doc(fs, doc)
    return fs


def _ids(store: Any, node: Node, order: tuple[tuple[Field, bool], ...] = ()) -> list[str]:
    return [d["run_id"] for d in store.query_runs(where=Query(node, None, order))]


STARTED, FINISHED = Field("started_at"), Field("finished_at")
B = "2001-09-09T01:46:40Z"


@pytest.mark.parametrize("engine", ENGINES)
def test_time_filters_give_known_answers(timed: FileStore, engine: str,
                                         request: pytest.FixtureRequest) -> None:
    store = _engine(engine, timed, request)
    same = ["t-billion", "t-billion-naive", "t-billion-offset"]
    assert _ids(store, Compare(STARTED, "=", BILLION)) == same
    assert _ids(store, Compare(STARTED, "!=", BILLION)) == ["t-2038", "t-billion+1us", "t-epoch"]
    assert _ids(store, Compare(STARTED, "<", BILLION)) == ["t-epoch"]
    assert _ids(store, Compare(STARTED, "<=", BILLION)) == sorted(["t-epoch", *same])
    assert _ids(store, Compare(STARTED, ">", BILLION)) == ["t-2038", "t-billion+1us"]
    assert _ids(store, Compare(STARTED, ">=", BILLION + 1)) == ["t-2038", "t-billion+1us"]
    assert _ids(store, Compare(STARTED, "<", 0)) == []
    assert _ids(store, Between(STARTED, 1, BILLION)) == same
    assert _ids(store, In(STARTED, (0, 2**31 * S))) == ["t-2038", "t-epoch"]
    assert _ids(store, IsNull(STARTED)) == ["t-none"]
    assert _ids(store, IsNull(FINISHED)) == ["t-billion-naive", "t-none"]
    assert _ids(store, IsNull(FINISHED, negate=True)) == [
        "t-2038", "t-billion", "t-billion+1us", "t-billion-offset", "t-epoch"]
    assert _ids(store, Compare(FINISHED, ">", BILLION + 1_500_000)) == [
        "t-2038", "t-billion+1us", "t-billion-offset"]
    assert _ids(store, Compare(FINISHED, "<=", BILLION + 1_500_000)) == ["t-billion", "t-epoch"]
    assert _ids(store, Compare(FINISHED, "<", 2**31 * S)) == [
        "t-2038", "t-billion", "t-billion-offset", "t-epoch"]
    assert _ids(store, Not(Compare(FINISHED, ">=", 2))) == [
        "t-billion-naive", "t-epoch", "t-none"]
    # ordered chronologically, runs without a time last in both directions
    assert _ids(store, TrueNode(), ((STARTED, False),)) == [
        "t-epoch", "t-billion", "t-billion-naive", "t-billion-offset", "t-billion+1us",
        "t-2038", "t-none"]
    assert _ids(store, TrueNode(), ((FINISHED, True),)) == [
        "t-billion+1us", "t-2038", "t-billion-offset", "t-billion", "t-epoch",
        "t-billion-naive", "t-none"]


@pytest.mark.parametrize("engine", ENGINES)
def test_times_come_back_in_one_utc_form(timed: FileStore, engine: str,
                                         request: pytest.FixtureRequest) -> None:
    store = _engine(engine, timed, request)
    got = {d["run_id"]: (d.get("started_at"), d.get("finished_at"))
           for d in store.query_runs(columns=["finished_at"])}
    assert got == {
        "t-epoch": ("1970-01-01T00:00:00.000000Z", "1970-01-01T00:00:00.000001Z"),
        "t-billion": ("2001-09-09T01:46:40.000000Z", "2001-09-09T01:46:41.500000Z"),
        "t-billion-offset": ("2001-09-09T01:46:40.000000Z", "2001-09-09T01:46:41.500001Z"),
        "t-billion-naive": ("2001-09-09T01:46:40.000000Z", None),
        "t-billion+1us": ("2001-09-09T01:46:40.000001Z", "2038-01-19T03:14:08.000000Z"),
        "t-2038": ("2038-01-19T03:14:08.000000Z", "2038-01-19T03:14:07.999999Z"),
        "t-none": (None, None),
    }


def test_time_filters_in_the_query_language(timed: FileStore) -> None:
    """The parser turns ISO texts (any zone, or none) into the same instants."""
    for where in (f"started_at = '{B}'", "started_at = '2001-09-09T01:46:40'",
                  "started_at = '2001-09-09T02:46:40+01:00'"):
        got = [d["run_id"] for d in timed.query_runs(where=where)]
        assert got == ["t-billion", "t-billion-naive", "t-billion-offset"], where
    got = [d["run_id"] for d in timed.query_runs(where="finished_at >= '2038-01-19'")]
    assert got == ["t-2038", "t-billion+1us"]


FLAG = Field("params", "flag")


@pytest.fixture
def flagged(tmp_path: Any) -> FileStore:
    fs = FileStore(str(tmp_path / "flags"), experiment_id="q:1")
    for name, value in {"f-true": True, "f-false": False, "f-one": 1, "f-zero": 0,
                        "f-str": "true", "f-none": None, "f-list": [True]}.items():
        doc = make_doc(0, params={"flag": value})
        doc["run_id"] = name
        write_doc(fs, doc)
    doc = make_doc(0, params={})
    doc["run_id"] = "f-missing"
    write_doc(fs, doc)
    return fs


@pytest.mark.parametrize("engine", ENGINES)
def test_boolean_comparisons_give_known_answers(flagged: FileStore, engine: str,
                                                request: pytest.FixtureRequest) -> None:
    """Booleans compare only with = and != (never with numbers or strings); the
    ordering operators are false for them on every engine."""
    store = _engine(engine, flagged, request)
    assert _ids(store, Compare(FLAG, "=", True)) == ["f-true"]
    assert _ids(store, Compare(FLAG, "=", False)) == ["f-false"]
    assert _ids(store, Compare(FLAG, "!=", True)) == ["f-false"]
    assert _ids(store, Compare(FLAG, "!=", False)) == ["f-true"]
    for op in ("<", "<=", ">", ">="):
        for lit in (True, False):
            assert _ids(store, Compare(FLAG, op, lit)) == [], (op, lit)
    assert _ids(store, Between(FLAG, False, True)) == []
    assert _ids(store, Compare(FLAG, "=", 1)) == ["f-one"]
    assert _ids(store, Compare(FLAG, ">=", 0)) == ["f-one", "f-zero"]
    assert _ids(store, Compare(FLAG, "=", "true")) == ["f-str"]
    assert _ids(store, In(FLAG, (True, 0))) == ["f-true", "f-zero"]
    assert _ids(store, In(FLAG, (True,), negate=True)) == [
        "f-false", "f-one", "f-str", "f-zero"]
    assert _ids(store, Not(Compare(FLAG, "=", True))) == [
        "f-false", "f-list", "f-missing", "f-none", "f-one", "f-str", "f-zero"]
    assert _ids(store, Contains(FLAG, True)) == ["f-list"]
    assert _ids(store, IsNull(FLAG)) == ["f-missing", "f-none"]
    # numbers, then strings, then booleans (false before true), then the rest
    assert _ids(store, TrueNode(), ((FLAG, False),)) == [
        "f-zero", "f-one", "f-str", "f-false", "f-true", "f-list", "f-missing", "f-none"]
    assert _ids(store, TrueNode(), ((FLAG, True),)) == [
        "f-one", "f-zero", "f-str", "f-true", "f-false", "f-list", "f-missing", "f-none"]


# ------------------------------------------------------- the reference evaluator

CUT = BILLION  # lost cutoff of the evaluator tests: 2001-09-09T01:46:40Z


def _doc(rid: str, **fields: Any) -> dict[str, Any]:
    return {"run_id": rid, "experiment_id": "e:1", "status": "success", **fields}


def _match(node: Node, doc: dict[str, Any], derived: dict[str, Any] | None = None) -> bool:
    return predicate(node, CUT)(doc, derived)


# the value of params.x in each document
XS: dict[str, Any] = {"int1": 1, "float1": 1.0, "two": 2, "neg": -3.5, "str1": "1", "strb": "b",
                      "stra": "a", "true": True, "false": False, "none": None, "list": [1, "a"],
                      "dict": {"k": 1}}
XDOCS = [_doc(k, params={"x": v}) for k, v in XS.items()] + [_doc("missing", params={}),
                                                             _doc("noparams")]


def _which(node: Node) -> set[str]:
    return {d["run_id"] for d in XDOCS if _match(node, d)}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (Compare(P, "=", 1), {"int1", "float1"}),
        (Compare(P, "=", 1.0), {"int1", "float1"}),
        (Compare(P, "!=", 1), {"two", "neg"}),
        (Compare(P, "<", 1), {"neg"}),
        (Compare(P, "<=", 1), {"neg", "int1", "float1"}),
        (Compare(P, ">", 1), {"two"}),
        (Compare(P, ">=", 1), {"two", "int1", "float1"}),
        (Compare(P, "=", "1"), {"str1"}),
        (Compare(P, "!=", "a"), {"str1", "strb"}),
        (Compare(P, "<", "b"), {"str1", "stra"}),
        (Compare(P, "<=", "a"), {"str1", "stra"}),
        (Compare(P, ">", "a"), {"strb"}),
        (Compare(P, ">=", "a"), {"stra", "strb"}),
        (Compare(P, "=", True), {"true"}),
        (Compare(P, "!=", True), {"false"}),
        (Compare(P, "<", True), set()),
        (Compare(P, ">=", False), set()),
        (Compare(P, "=", None), set()),
        (Compare(P, "!=", None), set()),
        (Compare(P, "=", [1, "a"]), set()),
        (In(P, (1, "b", True)), {"int1", "float1", "strb", "true"}),
        (In(P, (1, "b", True), negate=True), {"two", "neg", "str1", "stra", "false"}),
        (In(P, (None,)), set()),
        (In(P, ([1, "a"],), negate=True), {"int1", "float1", "two", "neg", "str1", "strb",
                                          "stra", "true", "false"}),
        (Between(P, 1, 2), {"int1", "float1", "two"}),
        (Between(P, -3.5, 0.5), {"neg"}),
        (Between(P, 1.5, 1.9), set()),
        (Between(P, "a", "b"), {"stra", "strb"}),
        (Between(P, 2, 1), set()),
        (Between(P, False, True), set()),
        (StartsWith(P, "b"), {"strb"}),
        (StartsWith(P, ""), {"str1", "stra", "strb"}),
        (Contains(P, 1), {"list"}),
        (Contains(P, "a"), {"list", "stra"}),
        (Contains(P, ""), {"str1", "stra", "strb"}),
        (Contains(P, 1.0), {"list"}),
        (Contains(P, True), set()),
        (IsNull(P), {"none", "missing", "noparams"}),
        (IsNull(P, negate=True), set(XS) - {"none"}),
        (TrueNode(), set(XS) | {"missing", "noparams"}),
        (Not(TrueNode()), set()),
        (Not(Compare(P, "=", 1)), set(XS) - {"int1", "float1"} | {"missing", "noparams"}),
        (And((Compare(P, ">=", 1), Compare(P, "<", 2))), {"int1", "float1"}),
        (And((Compare(P, ">=", 1), Compare(P, "=", "a"))), set()),
        (Or((Compare(P, "=", 2), Compare(P, "=", "a"))), {"two", "stra"}),
        (Or((Compare(P, "=", 9), Compare(P, "=", "z"))), set()),
        (Or((And((Compare(P, ">", 0), Not(Compare(P, "=", 2)))), IsNull(P))),
         {"int1", "float1", "none", "missing", "noparams"}),
    ],
)
def test_each_node_has_known_answers(node: Node, expected: set[str]) -> None:
    assert _which(node) == expected


def test_fixed_fields_read_as_their_kind() -> None:
    doc = _doc("r1", status="running", heartbeat_at="2001-09-09T01:46:39Z", tags=["a", None, 1],
               duration_ms=12.5, started_at="2001-09-09T01:46:40Z", finished_at="garbage",
               experiment_id="e:1")
    assert _match(Compare(Field("status"), "=", "lost"), doc)
    assert not _match(Compare(Field("status"), "=", "running"), doc)
    assert _match(Contains(Field("tags"), ""), doc)  # null tag: ""
    assert _match(Contains(Field("tags"), "1"), doc)  # other tags: their text
    assert not _match(Contains(Field("tags"), 1), doc)
    assert _match(Compare(Field("duration_ms"), ">", 12), doc)
    assert _match(Compare(Field("started_at"), "=", BILLION), doc)
    assert _match(IsNull(Field("finished_at")), doc)
    assert _match(StartsWith(Field("run_id"), "r"), doc)
    assert _match(Compare(Field("experiment_id"), "=", "e:1"), doc)
    odd = {"run_id": 7, "experiment_id": None, "status": 3, "tags": "a", "duration_ms": "5"}
    for field in ("run_id", "experiment_id", "status", "duration_ms"):
        assert _match(IsNull(Field(field)), odd), field
    assert not _match(Contains(Field("tags"), "a"), odd)  # not a list: no tags
    assert _match(Compare(Field("duration_ms"), "=", 5), _doc("d", duration_ms=5))
    assert not _match(Compare(Field("duration_ms"), "=", 1), _doc("d", duration_ms=True))


def test_namespaces_and_derived_values() -> None:
    doc = _doc("r1", params={"a": 1}, metrics={"a": 2})
    assert _match(Compare(Field("params", "a"), "=", 1), doc)
    assert _match(Compare(Field("metrics", "a"), "=", 2), doc)
    assert _match(Compare(Field("derived", "a"), "=", 3), doc, {"a": 3})
    assert _match(IsNull(Field("derived", "a")), doc, None)
    assert _match(IsNull(Field("metrics", "a")), _doc("r2", metrics=[1]))


def test_effective_status_at_the_cutoff() -> None:
    def status(**fields: Any) -> Any:
        return status_at_cutoff(_doc("r", **fields), CUT)

    assert status(status="running", heartbeat_at="2001-09-09T01:46:40Z") == "running"
    assert status(status="running", heartbeat_at="2001-09-09T01:46:39.999999Z") == "lost"
    assert status(status="running", heartbeat_at="",
                  started_at="2001-09-09T01:46:39Z") == "lost"  # no heartbeat: the start
    assert status(status="running", started_at="2001-09-09T01:46:41Z") == "running"
    assert status(status="running") == "running"  # no time at all: never lost
    assert status(status="running", heartbeat_at="later",
                  started_at="1970-01-01T00:00:00Z") == "running"
    assert status(status="queued", heartbeat_at="1970-01-01T00:00:00Z") == "queued"
    assert status(status=None) is None
    assert status(status=1) is None


def test_evaluate_uses_the_cutoff_it_is_given() -> None:
    doc = _doc("r", status="running", heartbeat_at="2001-09-09T01:46:40Z")
    lost = Compare(Field("status"), "=", "lost")
    assert evaluate(lost, doc, cutoff=CUT + 1)
    assert not evaluate(lost, doc, cutoff=CUT)
    assert evaluate(lost, doc)  # now: long after 2001
    assert evaluate(Compare(Field("derived", "d"), "=", 1), doc, {"d": 1}, CUT)


def test_unknown_node_is_a_type_error() -> None:
    class Odd(Node):
        field = P

    with pytest.raises(TypeError, match="unknown query node"):
        predicate(Odd(), CUT)


def _order(docs: list[dict[str, Any]], *order: tuple[Field, bool],
           derived: list[Any] | None = None) -> list[str]:
    items = list(zip(docs, derived or [None] * len(docs), strict=True))
    return [d["run_id"] for d, _ in sort_documents(items, tuple(order), CUT)]


def test_sort_documents_orders_kinds_then_values_then_identity() -> None:
    docs = [_doc(k, params={"x": v}) for k, v in XS.items()] + [
        _doc("missing", params={}), _doc("b-int1", params={"x": 1}),
        {"run_id": None, "experiment_id": "e:0", "params": {"x": 1}}]
    assert _order(docs, (P, False)) == [
        "neg", None, "b-int1", "float1", "int1", "two", "str1", "stra", "strb", "false", "true",
        "dict", "list", "missing", "none"]
    assert _order(docs, (P, True)) == [
        "two", None, "b-int1", "float1", "int1", "neg", "strb", "stra", "str1", "true", "false",
        "dict", "list", "missing", "none"]
    # a second key breaks ties of the first
    two = [_doc("a", params={"x": 1, "y": 2}), _doc("b", params={"x": 1, "y": 1}),
           _doc("c", params={"x": 0, "y": 3})]
    assert _order(two, (P, False), (Field("params", "y"), False)) == ["c", "b", "a"]
    assert _order(two, (P, True), (Field("params", "y"), True)) == ["a", "b", "c"]
    # experiment id before run id
    ids = [{"run_id": "a", "experiment_id": "z:1"}, {"run_id": "b", "experiment_id": "y:1"},
           {"run_id": "c", "experiment_id": 5}]
    assert _order(ids, (P, False)) == ["c", "b", "a"]
    assert _order([_doc("d2"), _doc("d1")], (Field("derived", "v"), False),
                  derived=[{"v": 1}, {"v": 2}]) == ["d2", "d1"]


def test_project_returns_identity_and_the_requested_columns() -> None:
    doc = _doc("r1", status="running", heartbeat_at="2001-09-09T01:46:39Z",
               started_at="2001-09-09T03:46:40+02:00", finished_at="2001-09-09T01:46:41Z",
               params={"a": 1, "b": None, "c": "x"}, metrics={"m": 0.5},
               tags=["t", None], duration_ms=3)
    cols = (Field("params", "a"), Field("params", "b"), Field("metrics"), Field("derived", "d"),
            Field("derived", "gone"), Field("finished_at"), Field("status"), Field("tags"),
            Field("duration_ms"), Field("run_id"))
    assert project(doc, {"d": 2, "gone": None}, cols, CUT) == {
        "run_id": "r1", "experiment_id": "e:1", "status": "lost",
        "started_at": "2001-09-09T01:46:40.000000Z", "finished_at": "2001-09-09T01:46:41.000000Z",
        "params": {"a": 1}, "metrics": {"m": 0.5}, "derived": {"d": 2},
        "tags": ["t", ""], "duration_ms": 3,
    }
    assert project(doc, None, (Field("params"), Field("derived")), CUT) == {
        "run_id": "r1", "experiment_id": "e:1", "status": "lost",
        "started_at": "2001-09-09T01:46:40.000000Z", "params": {"a": 1, "c": "x"},
        "derived": {},
    }
    assert project(_doc("r2", params="oops"), {"d": None, "e": 1}, (Field("params"),
                   Field("derived")), CUT) == {
        "run_id": "r2", "experiment_id": "e:1", "status": "success", "started_at": None,
        "params": {}, "derived": {"e": 1}}


def test_known_fields_are_the_non_null_names() -> None:
    docs = [_doc("a", params={"x": 1, "n": None}, metrics={"m": 0}),
            _doc("b", params=[1], metrics={"k": False})]
    assert known_fields(docs, [{"d": 1, "z": None}]) == {
        "params.x", "metrics.m", "metrics.k", "derived.d"}
    assert known_fields([]) == set()


def test_run_query_filters_orders_limits_and_projects() -> None:
    docs = [_doc(f"r{i}", params={"x": i, "name": f"n{i % 2}"}) for i in (3, 1, 2, 0)]
    assert [d["run_id"] for d in run_query(docs, Query(Compare(P, ">=", 1)), cutoff=CUT)] == [
        "r1", "r2", "r3"]
    desc = Query(TrueNode(), None, ((P, True),), 2)
    assert [d["run_id"] for d in run_query(docs, desc, cutoff=CUT)] == ["r3", "r2"]
    assert run_query(docs, Query(TrueNode(), None, (), 0), cutoff=CUT) == []
    assert run_query(docs, Query(Compare(P, "=", 2)), cutoff=CUT) == [docs[2]]  # whole doc
    proj = Query(Compare(P, "=", 2), (Field("params", "name"),))
    assert run_query(docs, proj, cutoff=CUT) == [
        {"run_id": "r2", "experiment_id": "e:1", "status": "success", "started_at": None,
         "params": {"name": "n0"}}]
    # derived values come from derived_of, only when the query names them
    calls: list[str] = []

    def derived_of(doc: dict[str, Any]) -> dict[str, Any]:
        calls.append(doc["run_id"])
        return {"double": doc["params"]["x"] * 2}

    got = run_query(docs, Query(Compare(Field("derived", "double"), ">", 3)), derived_of,
                    cutoff=CUT)
    assert [d["run_id"] for d in got] == ["r2", "r3"]
    assert sorted(calls) == ["r0", "r1", "r2", "r3"]
    calls.clear()
    run_query(docs, Query(Compare(P, ">", 3)), derived_of, cutoff=CUT)
    assert calls == []
    # the default cutoff is now
    running = [_doc("old", status="running", heartbeat_at="2001-01-01T00:00:00Z")]
    assert run_query(running, Query(Compare(Field("status"), "=", "lost"))) == running


def test_run_query_checks_field_names() -> None:
    docs = [_doc("r1", params={"lr": 0.1}, metrics={"score": None})]
    with pytest.raises(UnknownFieldError, match=r"params\.lrr"):
        run_query(docs, Query(Compare(Field("params", "lrr"), "=", 1)), cutoff=CUT)
    with pytest.raises(UnknownFieldError, match=r"metrics\.score"):  # only null values
        run_query(docs, Query(IsNull(Field("metrics", "score"))), cutoff=CUT)
    with pytest.raises(UnknownFieldError):
        run_query(docs, Query(TrueNode(), (Field("params", "nope"),)), cutoff=CUT)
    with pytest.raises(UnknownFieldError):
        run_query(docs, Query(TrueNode(), None, ((Field("metrics", "nope"), False),)),
                  cutoff=CUT)
    # known through a derived value; unchecked on request; any name without runs
    derived = Query(Compare(Field("derived", "d"), "=", 1))
    assert run_query(docs, derived, lambda d: {"d": 1}, cutoff=CUT) == docs
    assert run_query(docs, Query(Compare(Field("params", "lrr"), "=", 1)), cutoff=CUT,
                     check=False) == []
    assert run_query([], Query(Compare(Field("params", "lrr"), "=", 1)), cutoff=CUT) == []
    assert run_query(docs, Query(Compare(Field("params", "lr"), "=", 0.1)), cutoff=CUT) == docs


def test_lost_cutoff_uses_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30, no daylight saving
    time.tzset()
    try:
        before = time.time_ns() // 1000
        got = lost_cutoff(lost_after=0)
        after = time.time_ns() // 1000
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before <= got <= after


def test_derived_values_reach_every_kind_of_node() -> None:
    d = Field("derived", "d")
    doc = _doc("r", status="running", heartbeat_at="2001-09-09T01:46:39Z")
    der = {"d": 5, "s": "abc", "l": [1, 2]}
    lost = Compare(Field("status"), "=", "lost")
    for node in (
        And((Compare(d, "=", 5), lost)), Or((Compare(d, "=", 9), Compare(d, ">", 4))),
        Or((lost, Compare(d, "=", 9))), Not(Compare(d, "!=", 5)), Not(Not(lost)),
        In(d, (5, 6)), Between(d, 5, 5), StartsWith(Field("derived", "s"), "ab"),
        Contains(Field("derived", "l"), 2), IsNull(d, negate=True),
        And((Or((Not(Compare(d, "<", 5)), IsNull(d))), Between(d, 0, 9))),
    ):
        assert _match(node, doc, der), node
        assert not _match(Not(node), doc, der), node


def test_identity_order_of_documents_without_text_ids() -> None:
    pairs = [({"experiment_id": "B:1", "run_id": "a"}, None),
             ({"experiment_id": None, "run_id": "z"}, None),
             ({"experiment_id": "A:1", "run_id": 7}, None),
             ({"experiment_id": "A:1", "run_id": "B"}, None)]
    keys = sorted(_eval._identity_key(p) for p in pairs)
    assert keys == [("", "z"), ("A:1", ""), ("A:1", "B"), ("B:1", "a")]
    ordered = sort_documents(pairs, ((Field("params", "x"), False),), CUT)
    assert [(d["experiment_id"], d["run_id"]) for d, _ in ordered] == [
        (None, "z"), ("A:1", 7), ("A:1", "B"), ("B:1", "a")]


def test_run_query_orders_by_experiment_then_run_id() -> None:
    docs = [{**_doc("b"), "experiment_id": "B:1"}, {**_doc("a"), "experiment_id": "B:1"},
            {**_doc("z"), "experiment_id": "A:1"}, {**_doc("Z"), "experiment_id": "a:1"}]
    assert [(d["experiment_id"], d["run_id"]) for d in run_query(docs, Query(), cutoff=CUT)] == [
        ("A:1", "z"), ("B:1", "a"), ("B:1", "b"), ("a:1", "Z")]


def test_run_query_keeps_the_cutoff_it_is_given() -> None:
    docs = [_doc("r", status="running", heartbeat_at="2001-09-09T01:46:40Z")]
    running = Query(Compare(Field("status"), "=", "running"), (Field("status"),))
    assert run_query(docs, running, cutoff=CUT) == [
        {"run_id": "r", "experiment_id": "e:1", "status": "running", "started_at": None}]
    assert run_query(docs, running) == []  # with the current time it is lost


def test_run_query_knows_fields_from_every_document_and_namespace() -> None:
    docs = [_doc("a", params={"lr": 0.1}, metrics={"acc": 0.5}), _doc("b", params={"n": 1})]
    for node in (Compare(Field("params", "lr"), "=", 0.1), Compare(Field("metrics", "acc"), ">", 0)):
        assert [d["run_id"] for d in run_query(docs, Query(node), cutoff=CUT)] == ["a"]
    got = run_query(docs, Query(TrueNode(), (Field("derived", "twice"),)),
                    lambda doc: {"twice": 2 * len(doc["run_id"])}, cutoff=CUT)
    assert [d["derived"] for d in got] == [{"twice": 2}, {"twice": 2}]


def test_projected_columns_of_each_kind() -> None:
    doc = _doc("r", started_at="2001-09-09T03:46:40+02:00", metrics={"m": 0.5, "inf": "Infinity"})
    cols = (Field("metrics", "m"), Field("metrics", "inf"), Field("started_at"), Field("status"))
    assert project(doc, None, cols, CUT) == {
        "run_id": "r", "experiment_id": "e:1", "status": "success",
        "started_at": "2001-09-09T01:46:40.000000Z", "metrics": {"m": 0.5, "inf": "Infinity"}}


def test_non_finite_metrics_are_numbers_in_filters_and_order() -> None:
    """Metrics and derived values stored as "Infinity", "-Infinity" or "NaN" are those
    numbers (a param holding such a text stays a text); NaN sorts after every number."""
    m, d = Field("metrics", "m"), Field("derived", "v")
    docs = {k: _doc(k, metrics={"m": v}, params={"x": v})
            for k, v in {"inf": "Infinity", "ninf": "-Infinity", "nan": "NaN", "big": 1e308,
                         "neg": -1.0, "zero": 0}.items()}

    def hits(node: Node, derived: Any = None) -> set[str]:
        return {k for k, doc in docs.items() if _match(node, doc, derived and derived.get(k))}

    assert hits(Compare(m, ">", 1e308)) == {"inf"}
    assert hits(Compare(m, "<", -1e308)) == {"ninf"}
    assert hits(Compare(m, "!=", 0)) == {"inf", "ninf", "nan", "big", "neg"}
    assert hits(Compare(P, "=", "Infinity")) == {"inf"}  # a param text stays a text
    assert hits(Compare(P, ">", 1e308)) == set()
    derived = {k: {"v": doc["metrics"]["m"]} for k, doc in docs.items()}
    assert hits(Compare(d, ">", 1e308), derived) == {"inf"}
    items = [(doc, derived[k]) for k, doc in docs.items()]
    for start in range(len(items)):  # NaN first, last, anywhere in the input
        turned = items[start:] + items[:start]
        assert [doc["run_id"] for doc, _ in sort_documents(turned, ((m, False),), CUT)] == [
            "ninf", "neg", "zero", "big", "inf", "nan"]
        assert [doc["run_id"] for doc, _ in sort_documents(turned, ((d, True),), CUT)] == [
            "nan", "inf", "big", "zero", "neg", "ninf"]


def test_run_query_skips_and_names_documents_that_are_not_runs() -> None:
    from metalab.query import problems_to

    good = _doc("good")
    bad = [["not", "a", "dict"], {**_doc(""), "run_id": ""}, {**_doc("s"), "status": "weird"}]
    seen: list[Any] = []
    with problems_to(seen.append):
        assert run_query([bad[0], good, *bad[1:]], Query(), cutoff=CUT) == [good]
    assert [str(e) for e in seen] == [
        "run record of type list is not a JSON object; it was skipped",
        "run record (run_id '', experiment_id 'e:1') lacks a valid run_id (it holds ''); "
        "it was skipped",
        "run record (run_id 's', experiment_id 'e:1') lacks a valid status (it holds 'weird'); "
        "it was skipped",
    ]
    assert [e.path for e in seen] == [None, None, None]
    seen.clear()
    with problems_to(seen.append):
        run_query([good, bad[2]], Query(), cutoff=CUT, source_of=lambda doc: "runs/s.json")
    assert [(str(e), e.path) for e in seen] == [
        ("run record runs/s.json lacks a valid status (it holds 'weird'); it was skipped",
         "runs/s.json")]
