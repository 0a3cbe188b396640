"""Same answers everywhere: in-memory scan, FileStore catalog and PostgreSQL pushdown."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_support import make_doc, write_doc

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

SCALARS = st.sampled_from([0, 1, 2, -3, 1.0, 2.5, -0.5, 1e-3, "a", "ab", "b", "res1", "é", "",
                           True, False])
VALUES = st.one_of(SCALARS, st.none(), st.sampled_from([[1, "a"], ["ab", True], {"k": 1}]))
DYN_FIELDS = [Field("params", "a"), Field("params", "b"), Field("metrics", "m"),
              Field("derived", "d")]
STATUSES = ["success", "failed", "running", "cancelled"]
TIMES = ["2026-01-01T00:00:00.000000Z", "2026-01-02T10:00:00.500000Z", "2020-05-01T00:00:00Z",
         "2100-01-01T00:00:00Z"]


@st.composite
def stores(draw: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    n = draw(st.integers(1, 12))
    runs = []
    for i in range(n):
        params = {k: v for k in ("a", "b") if (v := draw(st.one_of(st.just(KeyError), VALUES)))
                  is not KeyError}
        metrics = {"m": draw(VALUES)} if draw(st.booleans()) else {}
        status = draw(st.sampled_from(STATUSES))
        doc = make_doc(i, params=params, metrics=metrics, status=status,
                       tags=draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=2)),
                       started_at=draw(st.sampled_from([*TIMES, None])),
                       duration_ms=draw(st.sampled_from([None, 1, 2.5, 100.0])),
                       heartbeat_at=draw(st.sampled_from(["2020-01-01T00:00:00Z",
                                                          "2100-01-01T00:00:00Z", None])))
        doc["run_id"] = draw(st.sampled_from(["r", "R", "a"])) + f"{i:02d}"
        derived = {"d": draw(VALUES)} if draw(st.booleans()) else None
        runs.append((doc, derived))
    return runs


def leaf(draw: Any) -> Node:
    kind = draw(st.sampled_from(["cmp", "in", "between", "starts", "contains", "null", "fixed"]))
    field = draw(st.sampled_from(DYN_FIELDS))
    if kind == "cmp":
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])),
                       draw(SCALARS))
    if kind == "in":
        return In(field, tuple(draw(st.lists(SCALARS, min_size=1, max_size=3))),
                  draw(st.booleans()))
    if kind == "between":
        return Between(field, draw(SCALARS), draw(SCALARS))
    if kind == "starts":
        return StartsWith(field, draw(st.sampled_from(["", "a", "r", "é"])))
    if kind == "contains":
        return Contains(field, draw(SCALARS))
    if kind == "null":
        return IsNull(field, draw(st.booleans()))
    which = draw(st.sampled_from(["status", "run_id", "started_at", "duration_ms", "tags"]))
    text = {
        "status": f"status {draw(st.sampled_from(['=', '!=', '<']))} "
                  f"'{draw(st.sampled_from([*STATUSES, 'lost']))}'",
        "run_id": f"run_id {draw(st.sampled_from(['startswith', '>=', 'contains']))} "
                  f"'{draw(st.sampled_from(['r', 'R0', 'a01', '0']))}'",
        "started_at": f"started_at {draw(st.sampled_from(['<', '>=', '=']))} "
                      f"'{draw(st.sampled_from(TIMES))}'",
        "duration_ms": draw(st.sampled_from(["duration_ms > 2", "duration_ms is null",
                                             "duration_ms in (1, 100)"])),
        "tags": f"tags contains '{draw(st.sampled_from(['x', 'y', 'w']))}'",
    }[which]
    return build_query(text).where


@st.composite
def filters(draw: Any, depth: int = 2) -> Node:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return leaf(draw)
    op = draw(st.sampled_from(["and", "or", "not"]))
    if op == "not":
        return Not(draw(filters(depth - 1)))
    items = tuple(draw(st.lists(filters(depth - 1), min_size=2, max_size=3)))
    return And(items) if op == "and" else Or(items)


@st.composite
def queries(draw: Any) -> Query:
    where = draw(filters())
    columns = draw(st.one_of(st.none(), st.lists(st.sampled_from(
        ["params.a", "params.b", "metrics.m", "derived.d", "params", "metrics", "derived",
         "tags", "duration_ms", "finished_at", "status", "run_id"]), max_size=4, unique=True)))
    order = draw(st.lists(st.sampled_from(
        ["params.a", "-params.a", "params.b", "-metrics.m", "derived.d", "-status", "started_at",
         "-duration_ms", "run_id"]), max_size=2))
    limit = draw(st.one_of(st.none(), st.integers(0, 6)))
    q = build_query(None, columns=columns, order_by=order, limit=limit)
    return Query(where, q.columns, q.order, q.limit)


def answer(store: Store, query: Query, scan: bool = False) -> Any:
    try:
        if scan:
            return Store.query_runs(store, None, query)
        return store.query_runs(None, query)
    except Exception as exc:  # the same error class everywhere
        return type(exc).__name__


def fill(runs: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> tuple[FileStore, str]:
    folder = tempfile.mkdtemp(prefix="mlq-")
    fs = FileStore(folder, experiment_id="q:1")
    for doc, derived in runs:
        write_doc(fs, doc)
        if derived is not None:
            fs.put_derived(doc["run_id"], derived)
    return fs, folder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=stores(), qs=st.lists(queries(), min_size=5, max_size=5))
def test_catalog_equals_scan(runs: Any, qs: list[Query]) -> None:
    fs, folder = fill(runs)
    try:
        for q in qs:
            scanned = answer(fs, q, scan=True)
            assert answer(fs, q) == scanned, q
    finally:
        shutil.rmtree(folder)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=stores(), later=stores(), qs=st.lists(queries(), min_size=3, max_size=3),
       merge_at=st.integers(1, 6), gone=st.lists(st.integers(0, 11), max_size=4))
def test_catalog_equals_scan_through_delta_and_merges(
    runs: Any, later: Any, qs: list[Query], merge_at: int, gone: list[int]
) -> None:
    """Runs written, rewritten and deleted between queries, with a merge threshold
    so small that changes land in the delta, go straight to the main table, or
    are merged at random points: every answer still equals the scan."""
    from unittest import mock

    from metalab.store._index import _catalog, _filestore

    class Strict(_catalog.Catalog):
        def query(self, query: Query, cutoff: int) -> Any:
            try:
                return super().query(query, cutoff)
            except _catalog.CatalogUnavailable as exc:  # a scan would hide the fault
                raise AssertionError(f"the catalog failed: {exc}") from exc

    fs, folder = fill(runs)
    try:
        with mock.patch.object(_catalog, "_MERGE_MIN", merge_at), \
                mock.patch.object(_catalog, "_MERGE_MAX", merge_at), \
                mock.patch.object(_filestore, "Catalog", Strict):
            for step, q in enumerate(qs):
                if step == 1:  # rewrites of earlier runs (same ids) and new ones
                    for doc, derived in later:
                        write_doc(fs, doc)
                        if derived is not None:
                            fs.put_derived(doc["run_id"], derived)
                elif step == 2:  # runs deleted (with their change-log lines)
                    from metalab.store._changes import note_change

                    for i in gone:
                        for doc, _ in runs[i:i + 1]:
                            path = f"{fs.get_working_directory()}/runs/{doc['run_id']}.json"
                            if os.path.exists(path):
                                os.unlink(path)
                                note_change(fs.get_working_directory(), "r", doc["run_id"])
                assert answer(fs, q) == answer(fs, q, scan=True), (step, q)
    finally:
        shutil.rmtree(folder)


counter = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(runs=stores(), qs=st.lists(queries(), min_size=8, max_size=8))
def test_postgres_equals_catalog_equals_scan(pg_factory: Any, runs: Any, qs: list[Query]) -> None:
    fs, folder = fill(runs)
    try:
        pg = pg_factory(fs)

        def no_fallback(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the query fell back to the files instead of SQL")

        pg._files.query_runs = no_fallback  # the answers must come from SQL
        for q in qs:
            scanned = answer(fs, q, scan=True)
            assert answer(fs, q) == scanned, q
            assert answer(pg, q) == scanned, q
    finally:
        shutil.rmtree(folder)


def test_typed_comparisons_between_kinds_are_false(fstore: FileStore) -> None:
    write_doc(fstore, make_doc(50, params={"v": "1"}))
    write_doc(fstore, make_doc(51, params={"v": 1}))
    write_doc(fstore, make_doc(52, params={"v": True}))
    write_doc(fstore, make_doc(53, params={"v": None}))

    def ids(q: str) -> list[str]:
        return [d["run_id"] for d in fstore.query_runs(where=q)]

    assert ids("params.v = 1") == ["r051"]  # not "1", not true
    assert ids("params.v = 1.0") == ["r051"]
    assert ids("params.v = '1'") == ["r050"]
    assert ids("params.v = true") == ["r052"]
    assert ids("params.v != 1") == []  # other kinds and null: false
    assert ids("not params.v = 1") == ["r000", "r001", "r002", "r003", "r004", "r005", "r006",
                                      "r007", "r008", "r009", "r010", "r011", "r012", "r013",
                                      "r014", "r015", "r016", "r017", "r018", "r019", "r050",
                                      "r052", "r053"]
    assert ids("params.v > 0") == ["r051"]
    assert ids("params.v < true") == []  # booleans are not ordered
    assert ids("params.v is null and params.depth = 3") == ["r003", "r008", "r013", "r018"]
    assert ids("params.v is null and run_id startswith 'r05'") == ["r053"]


def test_status_lost_is_what_readers_see(fstore: FileStore) -> None:
    write_doc(fstore, make_doc(60, status="running", heartbeat_at="2020-01-01T00:00:00Z"))
    write_doc(fstore, make_doc(61, status="running", heartbeat_at="2999-01-01T00:00:00Z"))
    for engine in (lambda q: fstore.query_runs(where=q, columns=["status"]),
                   lambda q: Store.query_runs(fstore, where=q, columns=["status"])):
        assert [d["run_id"] for d in engine("status = 'lost'")] == ["r060"]
        assert [d["run_id"] for d in engine("status = 'running'")] == ["r061"]


@pytest.mark.parametrize("engine", ["catalog", "postgres"])
def test_hostile_field_names_inject_nothing(fstore: FileStore, pg_factory: Any,
                                            engine: str) -> None:
    evil = ["x'); DROP TABLE runs; --", 'a"b', "{s}", "%s", "%(p0)s", "f1", "g1 IS NULL OR 1",
            "é ü", "a.b", "back\\slash", "$v", "ключ😀", "new\nline"]
    for i, name in enumerate(evil):
        write_doc(fstore, make_doc(70 + i, params={name: i, "depth": 0}))
    store: Any = fstore if engine == "catalog" else pg_factory(fstore)
    if engine == "postgres":
        store._files.query_runs = None  # SQL only: a fallback would raise TypeError
    for i, name in enumerate(evil):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        found = store.query_runs(where=f'params."{quoted}" = {i}', columns=[f"params.{name}"])
        assert [d["run_id"] for d in found] == [f"r{70 + i:03d}"], name
        assert found[0]["params"] == {name: i}
        ranged = store.query_runs(where=f'params."{quoted}" < {i + 0.5} and params."{quoted}" >= {i}')
        assert [d["run_id"] for d in ranged] == [f"r{70 + i:03d}"], name
        kw = store.query_runs(where=build_query(keywords={f"params.{name}": i}))
        assert [d["run_id"] for d in kw] == [f"r{70 + i:03d}"], name
    # everything is still there
    assert len(store.query_runs()) == 20 + len(evil)


def test_postgres_store_answers_from_the_files_when_the_server_is_down(fstore: FileStore
                                                                       ) -> None:
    from metalab.store import PostgresStoreConfig

    cfg = PostgresStoreConfig(connection_string="postgresql://nobody@127.0.0.1:9/none",
                              file_root=fstore.config.root, experiment_id="q:1",
                              connect_timeout=1)
    with cfg.connect() as pg:
        q = "params.depth >= 2 and tags contains 'even'"
        assert pg.query_runs(where=q, columns=["params.depth"]) == Store.query_runs(
            fstore, where=q, columns=["params.depth"])


def test_postgres_checks_field_names_without_recomputing_the_field_catalog(
    fstore: FileStore, pg_factory: Any, pg_url: str
) -> None:
    """Writes mark the field catalog stale; a query naming fields asks the runs
    whether they have them instead of recomputing it (which reads every run
    and holds the experiment's row against writers), and still rejects a name
    no run has any more (the stale catalog lists it) with close names."""
    import psycopg
    from psycopg import sql

    from metalab import UnknownFieldError
    from metalab.model import RunRecord

    pg = pg_factory(fstore)
    assert pg.field_catalog("q:1")  # computed once: not stale
    pg.put_run_record(RunRecord.from_dict(make_doc(90, params={"fresh": 1.5})))
    pg.put_run_record(RunRecord.from_dict(make_doc(91, params={"gone_soon": 1})))
    assert pg.flush()
    pg.field_catalog("q:1")  # lists gone_soon
    pg.delete_run("r091")
    assert pg.flush()

    def stale() -> bool:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(sql.SQL(
                "SELECT catalog_stale FROM {}.experiments WHERE experiment_id = 'q:1'"
            ).format(sql.Identifier(pg.config.schema))).fetchone()
        return bool(row[0])

    assert stale()
    pg._files.query_runs = None  # answered in SQL (a fallback would raise TypeError)
    got = pg.query_runs(where="params.fresh > 1", columns=["params.fresh"])
    assert [d["run_id"] for d in got] == ["r090"]
    assert stale()  # not recomputed by the query
    with pytest.raises(UnknownFieldError) as err:
        pg.query_runs(where="params.gone_soon = 1")
    with pytest.raises(UnknownFieldError) as err2:
        pg.query_runs(where="params.dpth = 1")
    assert "params.depth" in err2.value.suggestions
    assert "gone_soon" in str(err.value) and stale()


@pytest.mark.parametrize("engine", ["catalog", "postgres"])
def test_comparisons_with_infinite_and_nan_numbers_agree_with_a_scan(
        fstore: FileStore, pg_factory: Any, engine: str) -> None:
    """A literal beyond the float range (``1e999``) is infinite; a NaN given in
    the keyword form compares false except by ``!=``: as in Python, on every
    engine (the server's own order puts NaN above every number)."""
    write_doc(fstore, make_doc(80, params={"x": 1e300, "depth": 0}))
    write_doc(fstore, make_doc(81, params={"x": -5, "depth": 0}))
    write_doc(fstore, make_doc(82, params={"x": "text", "depth": 0}))
    store: Any = fstore if engine == "catalog" else pg_factory(fstore)
    if engine == "postgres":
        def no_fallback(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the query fell back to the files instead of SQL")
        store._files.query_runs = no_fallback
    checked = 0
    for lit in (float("inf"), float("-inf"), float("nan")):
        for op in ("=", "!=", "<", "<=", ">", ">="):
            for top in (True, False):  # a conjunct of the filter, or under OR
                node = Compare(Field("params", "x"), op, lit)
                where = node if top else Or((node, build_query("params.depth = 99").where))
                q = Query(where=where, columns=(Field("params", "x"),))
                got = [d["run_id"] for d in store.query_runs(where=q)]
                assert got == [d["run_id"] for d in Store.query_runs(fstore, where=q)], (op, lit)
                checked += bool(got)
    assert checked  # (some queries match runs)
    x = Field("params", "x")
    for node in (In(x, (float("nan"), -5)), In(x, (float("nan"),), True),
                 Between(x, float("nan"), 10), Between(x, float("-inf"), float("inf")),
                 Contains(x, float("inf")), Not(Compare(x, "<", float("nan")))):
        q = Query(where=node)
        assert store.query_runs(where=q) == Store.query_runs(fstore, where=q), node
    assert [d["run_id"] for d in store.query_runs(where="params.x < 1e999")] == ["r080", "r081"]
    huge = "1" + "0" * 400  # an integer beyond the float range
    for q in (f"params.x < {huge}", f"params.x >= -{huge}", f"params.x = {huge}",
              f"params.x in ({huge}, -5)", f"params.x contains {huge}"):
        assert store.query_runs(where=q) == Store.query_runs(fstore, where=q), q
