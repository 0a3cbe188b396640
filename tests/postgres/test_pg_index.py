"""The index against the files: equality, scoping, rebuild, catalog, hostile names, transfer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pg_helpers import file_docs, index_rows, records
from psycopg import sql

from metalab._errors import ConfigError, ScopeError
from metalab.model import Status
from metalab.store import (
    FileStoreConfig,
    PostgresStore,
    PostgresStoreConfig,
    StoreConfig,
    create_store,
    export_store,
    parse_to_config,
)
from metalab.store._base import Store
from metalab.testing import make_record


def _derived_rows(conn, schema):
    q = sql.SQL("SELECT experiment_id, run_id, doc FROM {}.derived").format(sql.Identifier(schema))
    import orjson

    return {(e, r): orjson.loads(d) for e, r, d in conn.execute(q).fetchall()}


def _manifest_rows(conn, schema):
    q = sql.SQL("SELECT experiment_id, ts, doc FROM {}.experiment_manifests ORDER BY 1, 2").format(
        sql.Identifier(schema))
    import orjson

    return [(e, ts, orjson.loads(d)) for e, ts, d in conn.execute(q).fetchall()]


# ------------------------------------------------------------------ config
def test_uri_forms_and_round_trip(pg_url: str, tmp_path: Path) -> None:
    for scheme in ("postgresql", "postgres"):
        uri = pg_url.replace("postgresql", scheme, 1)
        cfg = parse_to_config(f"{uri}?file_root={tmp_path}&schema=s1&sslmode=disable"
                              "&application_name=ml-test&connect_timeout=3")
        assert isinstance(cfg, PostgresStoreConfig)
        assert cfg.schema == "s1" and cfg.file_root == str(tmp_path) and cfg.connect_timeout == 3
        assert "file_root" not in cfg.connection_string and "schema=" not in cfg.connection_string
        assert StoreConfig.from_dict(cfg.to_dict()) == cfg
        scoped = cfg.scoped("e:1")
        assert StoreConfig.from_dict(scoped.to_dict()) == scoped
    store = create_store(f"{pg_url}?application_name=ml-probe", file_root=str(tmp_path),
                         schema="s2", experiment_id="e:1")
    try:
        with store.index.connection() as conn:  # driver options reach the server
            assert conn.execute("SHOW application_name").fetchone()[0] == "ml-probe"
    finally:
        store.close()
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS s2 CASCADE")


def test_missing_file_root_is_a_clear_error(pg_url: str) -> None:
    with pytest.raises(ConfigError, match="file_root"):
        parse_to_config(pg_url)
    with pytest.raises(ConfigError, match=r"create_store\(uri, file_root"):
        PostgresStoreConfig(connection_string=pg_url)
    with pytest.raises(ConfigError, match="index_mode"):
        PostgresStoreConfig(connection_string=pg_url, file_root="/x", index_mode="later")


def test_schema_name_with_percent_is_refused_up_front(tmp_path: Path) -> None:
    # '%' inside a quoted identifier would be read as a parameter placeholder
    with pytest.raises(ConfigError, match="without '%'"):
        PostgresStoreConfig(connection_string="postgresql://u@h/db", file_root=str(tmp_path),
                            schema="runs%s")
    with pytest.raises(ConfigError, match="without '%'"):
        parse_to_config(f"postgresql://u@h/db?file_root={tmp_path}&schema=a%25b")


def test_password_hidden_in_repr_and_str(tmp_path: Path) -> None:
    cfg = parse_to_config(f"postgresql://bob:hunter2secret@db.example:5433/x?file_root={tmp_path}")
    for text in (repr(cfg), str(cfg), repr(cfg.connect()), str(cfg.scoped("e:1"))):
        assert "hunter2secret" not in text
    assert "hunter2secret" in cfg.to_dict()["connection_string"]  # workers need it


def test_package_imports_without_psycopg() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from metalab.store import ConfigRegistry, parse_to_config\n"
        "assert ConfigRegistry.get('postgres').__name__ == 'PostgresStoreConfig'\n"
        "c = parse_to_config('postgresql://h/db?file_root=/tmp/x')\n"
        "s = c.connect()\n"
        "try:\n    s.index.ping()\nexcept ImportError as e:\n    print('MISSING', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MISSING" in out.stdout and "metalab[postgres]" in out.stdout


# ------------------------------------------------------------------ equality
def test_index_equals_files_after_writes(make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1")
    recs = records("exp:1", 30)
    for r in recs:
        store.put_run_record(r)
    for r in recs[:10]:  # replace some
        store.put_run_record(r.replace(status=Status.FAILED, metrics={"loss": 9.0}))
    store.delete_run(recs[-1].run_id)
    store.put_derived(recs[0].run_id, {"acc": 0.5, "big": 1e300})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.put_experiment_manifest("exp:1", {"n": 1}, t0)
    store.put_experiment_manifest("exp:1", {"n": 2}, t0 + timedelta(seconds=1))
    assert store.flush()  # index writes are batched in the background
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert _derived_rows(pg_conn, pg_schema) == {("exp:1", recs[0].run_id): {"acc": 0.5, "big": 1e300}}
    assert [m for _e, _t, m in _manifest_rows(pg_conn, pg_schema)] == [{"n": 1}, {"n": 2}]
    # bulk reads come from the index and equal the files
    assert sorted(store.iter_run_documents(), key=lambda d: d["run_id"]) == sorted(
        file_docs(file_root, "exp:1").values(), key=lambda d: d["run_id"])
    assert store.count_runs(status="failed") == 10
    assert {d["run_id"] for d in store.iter_runs_with_status("failed")} == {
        r.run_id for r in recs[:10]}


def test_catalog_counts_are_exact(make_store) -> None:
    store = make_store("exp:1")
    for _ in range(3):  # repeated upserts must not inflate counts
        for r in records("exp:1", 12):
            store.put_run_record(r)
    store.put_derived("r00000", {"acc": 1})
    cat = {(c["namespace"], c["name"], c["type"]): c["count"] for c in store.field_catalog()}
    assert cat == {("params", "i", "number"): 12, ("params", "lr", "number"): 12,
                   ("metrics", "loss", "number"): 12, ("derived", "acc", "number"): 1}


# ------------------------------------------------------------------ scoping
def test_scoping_is_exact(collection, make_store, pg_conn, pg_schema) -> None:
    a, b = make_store("a:1"), make_store("b:1")
    for r in records("a:1", 5):
        a.put_run_record(r)
    for r in records("b:1", 3):
        b.put_run_record(r)
    assert len(a.list_run_records()) == 5 and len(b.list_run_records()) == 3
    assert a.count_runs() == 5 and b.count_runs() == 3
    assert list(a.iter_run_documents("b:1")) == []
    assert collection.list_experiments() == ["a:1", "b:1"]
    other = collection.for_experiment("b:1").connect()
    assert len(other.list_run_records()) == 3
    other.close()
    with pytest.raises(ScopeError):
        a.config.list_experiments()
    # a scoped rebuild touches only its experiment: mark b's rows and check they stay
    pg_conn.execute(sql.SQL("UPDATE {}.runs SET status = 'marker' WHERE experiment_id = 'b:1'")
                    .format(sql.Identifier(pg_schema)))
    assert a.rebuild_index() == 5
    statuses = {e: s for e, s in pg_conn.execute(sql.SQL(
        "SELECT DISTINCT experiment_id, status FROM {}.runs").format(sql.Identifier(pg_schema)))}
    assert statuses == {"a:1": "success", "b:1": "marker"}
    with collection.connect() as whole:
        assert whole.count_runs() == 8
        assert whole.rebuild_index() == 8
    assert set(index_rows(pg_conn, pg_schema, "b:1")) == {("b:1", f"r{i:05d}") for i in range(3)}


# ------------------------------------------------------------------ rebuild
def test_drop_schema_then_rebuild_restores(collection, make_store, pg_conn, pg_schema, file_root):
    store = make_store("exp:1")
    for r in records("exp:1", 25):
        store.put_run_record(r)
    store.put_derived("r00003", {"d": 3})
    store.put_experiment_manifest("exp:1", {"m": 1})
    assert store.flush()
    before = (index_rows(pg_conn, pg_schema), _derived_rows(pg_conn, pg_schema),
              _manifest_rows(pg_conn, pg_schema))
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pg_schema)))
    # reads still work (files) and writes still succeed while the index is gone
    assert len(store.list_run_records()) == 25
    store.put_run_record(make_record("late", "exp:1"))
    progress: list[tuple[int, int | None]] = []
    with collection.connect() as whole:
        assert whole.rebuild_index(progress=lambda d, t: progress.append((d, t))) == 26
    assert progress[-1] == (26, 26)
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert _derived_rows(pg_conn, pg_schema) == before[1]
    assert _manifest_rows(pg_conn, pg_schema) == before[2]
    assert not store.index_is_behind()


def test_interrupted_rebuild_then_rerun(make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1", index_mode="deferred")
    for r in records("exp:1", 1500):
        store.put_run_record(r)
    assert index_rows(pg_conn, pg_schema) == {}  # deferred: nothing indexed yet

    def boom(done: int, total: int | None) -> None:
        if done >= 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.rebuild_index(progress=boom)
    assert index_rows(pg_conn, pg_schema) == {}  # all or nothing
    assert store.index_is_behind()
    assert len(store.list_run_records()) == 1500  # reads fall back to the files
    store.rebuild_index()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert not store.index_is_behind()


def test_deferred_mode_and_reconcile(make_store, pg_conn, pg_schema, file_root) -> None:
    main = make_store("exp:1")
    main.reconcile()  # creates the (empty) index
    worker = make_store("exp:1", index_mode="deferred")
    for r in records("exp:1", 10):
        worker.put_run_record(r)
    worker.put_derived("r00001", {"x": 1})
    worker.delete_run("r00009")
    worker.put_experiment_manifest("exp:1", {"m": 1})
    assert index_rows(pg_conn, pg_schema) == {}
    assert worker.index_is_behind()
    assert len(worker.list_run_records()) == 9
    result = main.reconcile()
    assert result["replayed"] == 11  # 10 runs + the manifests and result["resynced"] == []
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert _derived_rows(pg_conn, pg_schema) == {("exp:1", "r00001"): {"x": 1}}
    assert len(_manifest_rows(pg_conn, pg_schema)) == 1
    assert not worker.index_is_behind()


# ------------------------------------------------------------------ hostile input
HOSTILE_EXP = "x'); DROP TABLE runs; --\"é:1"
HOSTILE_SCHEMA = 'a"; DROP SCHEMA public CASCADE; --'


def test_hostile_names_round_trip(pg_url, tmp_path, pg_conn) -> None:
    cfg = parse_to_config(
        f"{pg_url}?file_root={tmp_path}&schema=" + HOSTILE_SCHEMA.replace(";", "%3B").replace(
            '"', "%22").replace(" ", "%20")
    )
    assert cfg.schema == HOSTILE_SCHEMA
    store = cfg.scoped(HOSTILE_EXP).connect()
    try:
        params = {"it's": "a\"b;c", "naïve;--": 1, "x'); DROP TABLE runs; --": [1, "é"]}
        metrics = {"m'; DELETE FROM runs; --": 0.5, "ünï": 2}
        for i in range(3):
            store.put_run_record(make_record(f"r{i}", HOSTILE_EXP, params=params, metrics=metrics,
                                             tags=("t'ag", "ü")))
        store.put_derived("r0", {"d'; --": 1})
        store.put_experiment_manifest(HOSTILE_EXP, {"experiment_id": HOSTILE_EXP})
        got = store.list_run_records()
        assert len(got) == 3 and got[0].params == params and got[0].metrics == metrics
        assert index_rows(pg_conn, HOSTILE_SCHEMA) == file_docs(tmp_path, HOSTILE_EXP)
        cat = {(c["namespace"], c["name"]): c["count"] for c in store.field_catalog()}
        assert cat[("params", "it's")] == 3 and cat[("derived", "d'; --")] == 1
        assert store.rebuild_index() == 3
        # nothing else was touched: public still exists
        assert pg_conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'").fetchone()[0] == 1
    finally:
        store.close()
        pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(HOSTILE_SCHEMA)))


def test_nul_characters_do_not_block_the_index(make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1")
    store.put_run_record(make_record("r1", "exp:1", params={"s": "a\x00b"}))
    assert not store.index_is_behind()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")


# ------------------------------------------------------------------ moving
def test_from_filestore_to_filestore_and_export(pg_url, pg_schema, tmp_path, pg_conn) -> None:
    fs = FileStoreConfig(root=str(tmp_path / "src"), experiment_id="e:1").connect()
    for r in records("e:1", 6):
        fs.put_run_record(r)
    fs.put_derived("r00000", {"a": 1})
    fs.append_log("r00000", "run", "hello\n")
    fs.put_artifact("r00000", "blob", b"bytes", kind="file", format="bin")
    fs.put_experiment_manifest("e:1", {"experiment_id": "e:1"})
    pg = PostgresStore.from_filestore(pg_url, fs, schema=pg_schema)
    assert pg.experiment_id == "e:1" and pg.index.count_runs("e:1") == 6
    out = pg.to_filestore(tmp_path / "out")
    assert out.experiment_id == "e:1"
    assert out.get_log("r00000") == "hello\n"
    assert out.get_artifact_bytes("r00000", "blob") == b"bytes"
    assert out.get_derived("r00000") == {"a": 1}
    assert len(out.list_experiment_manifests("e:1")) == 1
    # export_store both ways, through the Store interface, idempotent
    dest = PostgresStoreConfig(connection_string=pg_url, file_root=str(tmp_path / "pg2"),
                               schema=pg_schema)
    rep = export_store(out.config, dest)
    assert rep.runs == 6
    assert export_store(out.config, dest).runs == 0  # second time: nothing to copy
    back = export_store(dest, tmp_path / "back")
    assert back.runs == 6
    again = FileStoreConfig(root=str(tmp_path / "back"), experiment_id="e:1").connect()
    assert {r.run_id for r in again.list_run_records()} == {f"r{i:05d}" for i in range(6)}
    assert again.get_artifact_bytes("r00000", "blob") == b"bytes"
    assert len(index_rows(pg_conn, pg_schema, "e:1")) == 6
    pg.close()


# ------------------------------------------------------------------ schema versions
def test_version_1_index_migrates_to_version_2(collection, pg_conn, pg_schema) -> None:
    """An index made by the version-1 schema (record text inside ``runs``) keeps working."""
    from psycopg.types.json import Jsonb

    from metalab._internal._json import dumps
    from metalab.store._postgres._schema import MIGRATIONS, SCHEMA_VERSION, schema_version

    def q(text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(pg_schema))

    pg_conn.execute(q("CREATE SCHEMA {s}"))
    pg_conn.execute(q("CREATE TABLE {s}.meta (key text PRIMARY KEY, value text)"))
    for stmt in MIGRATIONS[1]:
        pg_conn.execute(q(stmt))
    pg_conn.execute(q("INSERT INTO {s}.meta VALUES ('schema_version', '1')"))
    pg_conn.execute(q("INSERT INTO {s}.experiments (experiment_id) VALUES ('exp:1')"))
    docs = [make_record(f"r{i}", "exp:1", params={"i": i}).to_dict() for i in range(3)]
    docs[2] |= {"status": "running", "heartbeat_at": "2020-01-01T00:00:00Z"}
    for d in docs:
        pg_conn.execute(
            q("INSERT INTO {s}.runs (experiment_id, run_id, status, params, metrics, tags, record) "
              "VALUES (%s, %s, %s, %s, %s, %s, %s)"),
            ("exp:1", d["run_id"], d["status"], Jsonb(d["params"]), Jsonb(d["metrics"]),
             list(d.get("tags") or []), dumps(d).decode()),
        )
    # no run files: every answer below can only come from the migrated index
    store = collection.scoped("exp:1").connect()
    try:
        assert sorted(store.iter_run_documents(), key=lambda d: d["run_id"]) == docs
        lost = store.query_runs(where="status = 'lost'", columns=["params.i"])
        assert [(r["run_id"], r["status"], r["params"]) for r in lost] == [
            ("r2", "lost", {"i": 2})]
        assert [d["run_id"] for d in store.query_runs(where="params.i >= 1")] == ["r1", "r2"]
    finally:
        store.close()
    assert schema_version(pg_conn, pg_schema) == SCHEMA_VERSION == 4
    cols = {r[0] for r in pg_conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'runs'", (pg_schema,)).fetchall()}
    assert "record" not in cols and "heartbeat" in cols
    indexes = {r[0]: r[1] for r in pg_conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
        "AND tablename = 'runs'", (pg_schema,)).fetchall()}
    # (version 4: pages of one experiment in run id order come from an index)
    assert 'run_id COLLATE "C"' in indexes["runs_key_idx"]
    assert "runs_run_id_idx" not in indexes
    assert index_rows(pg_conn, pg_schema) == {("exp:1", d["run_id"]): d for d in docs}


def test_version_2_index_migrates_to_version_3(collection, pg_conn, pg_schema,
                                                monkeypatch) -> None:
    """A version-2 index gains the generation and the load cache, and keeps its runs."""
    from metalab import load_results
    from metalab.store._index import _pgcache

    monkeypatch.setattr(_pgcache, "CACHE_QUIET_S", 0.0)  # answers kept at once
    from metalab._internal._json import dumps
    from metalab.store._postgres._schema import MIGRATIONS, SCHEMA_VERSION, schema_version

    def q(text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(pg_schema))

    pg_conn.execute(q("CREATE SCHEMA {s}"))
    pg_conn.execute(q("CREATE TABLE {s}.meta (key text PRIMARY KEY, value text)"))
    for version in (1, 2):
        for step in MIGRATIONS[version]:
            if isinstance(step, str):
                pg_conn.execute(q(step))
            else:
                step(pg_conn, pg_schema)
    pg_conn.execute(q("INSERT INTO {s}.meta VALUES ('schema_version', '2')"))
    pg_conn.execute(q("INSERT INTO {s}.experiments (experiment_id, catalog_stale) "
                      "VALUES ('exp:1', true)"))
    docs = [make_record(f"r{i}", "exp:1", params={"i": i}).to_dict() for i in range(3)]
    from psycopg.types.json import Jsonb

    for d in docs:
        pg_conn.execute(
            q("INSERT INTO {s}.runs (experiment_id, run_id, status, params, metrics, tags) "
              "VALUES (%s, %s, %s, %s, %s, %s)"),
            ("exp:1", d["run_id"], d["status"], Jsonb(d["params"]), Jsonb(d["metrics"]),
             list(d.get("tags") or [])))
        pg_conn.execute(q("INSERT INTO {s}.run_records VALUES (%s, %s, %s)"),
                        ("exp:1", d["run_id"], dumps(d).decode()))
    store = collection.scoped("exp:1").connect()
    try:
        # no run files: the answers can only come from the migrated index
        loads = [load_results(store) for _ in range(2)]
        assert [r.run_ids for r in loads] == [["r0", "r1", "r2"]] * 2
        assert [r["r2"].params for r in loads] == [{"i": 2}] * 2
        assert store.index.last_table_source == "cache"
        store.put_run_record(make_record("r3", "exp:1", params={"i": 3}))
        store.flush()
        assert sorted(load_results(store).run_ids) == ["r0", "r1", "r2", "r3"]
        assert store.index.last_table_source == "query"
    finally:
        store.close()
    assert schema_version(pg_conn, pg_schema) == SCHEMA_VERSION == 4
    row = pg_conn.execute(
        "SELECT c.relpersistence, a.attstorage FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = %s AND c.relname = 'run_table_cache' AND a.attname = 'payload'",
        (pg_schema,)).fetchone()
    assert row == ("u", "e")  # unlogged, payload stored uncompressed
    gens = pg_conn.execute(q("SELECT generation FROM {s}.experiments")).fetchall()
    assert len(gens) == 1 and gens[0][0] > 0


def test_rebuild_refreshes_planner_statistics(make_store, pg_conn, pg_schema, monkeypatch) -> None:
    """A large rebuild leaves the tables analysed (the planner knows their size)."""
    from metalab.store._index import _pgsync

    monkeypatch.setattr(_pgsync, "ANALYZE_AFTER", 5)
    store = make_store("exp:1")
    for r in records("exp:1", 8):
        store.put_run_record(r)
    assert store.flush()
    assert store.rebuild_index() == 8
    rows = dict(pg_conn.execute(
        "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE schemaname = %s",
        (pg_schema,)).fetchall())
    assert rows["runs"] is not None and rows["derived"] is not None
    rel = pg_conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(format('%%I.runs', %s::text))",
        (pg_schema,)).fetchone()
    assert rel is not None and rel[0] == 8


def test_field_index_serves_range_filters(make_store, pg_conn, pg_schema) -> None:
    """Indexed numeric fields answer the same runs, through the index, for any name."""
    from metalab._errors import QueryError

    store = make_store("exp:1")
    odd = "it's; \"x\" {y} 5%s %%"
    for i in range(300):
        store.put_run_record(make_record(
            f"r{i:04d}", "exp:1", params={"lr": i / 300, odd: i % 7, "s": "a" if i % 2 else i},
            metrics={"score": (i * 37 % 300) / 300}))
    store.put_run_record(make_record("r9999", "exp:1", params={"lr": "high", odd: "z"}))
    assert store.flush()
    where = f"params.lr < 0.1 and metrics.score >= 0.5 and params.{odd!r} <= 3 and params.s > 2"
    from metalab.query._liveness import lost_cutoff
    from metalab.query._parser import build_query
    from metalab.store._index._pgquery import _compiler

    q = build_query("params.lr < 0.05")
    # without an index on the field the comparison is sent as the JSON path test alone
    assert "jsonb_typeof" not in _compiler(store._index, q, lost_cutoff()).select(q, "exp:1")[0]
    before = store.query_runs(where=where, columns=["params.lr", "metrics.score"])
    names = store.create_field_index("params.lr", "metrics.score", f"params.{odd}")
    assert len(set(names)) == 3
    assert store.create_field_index("params.lr") == names[:1]  # idempotent
    assert before and store.query_runs(where=where, columns=["params.lr", "metrics.score"]) == before
    # under NOT a comparison with a non-number is false, so its negation holds
    assert {r["run_id"] for r in store.query_runs(where="not params.lr < 0.5")} == {
        f"r{i:04d}" for i in range(150, 300)} | {"r9999"}
    # integers beyond 2^53: the exact answer, though their float forms are equal
    store.put_run_record(make_record("r8000", "exp:1", params={"lr": 2**53 + 1}))
    store.put_run_record(make_record("r8001", "exp:1", params={"lr": 2**53}))
    assert store.flush()
    for big, edge in ((f"params.lr > {2**53}", {"r8000"}), (f"params.lr < {2**53 + 1}", {"r8001"}),
                      (f"params.lr >= {2**53 + 1}", {"r8000"}), (f"params.lr = {2**53}", {"r8001"})):
        got = {r["run_id"] for r in store.query_runs(where=big)}
        assert got == {r["run_id"] for r in Store.query_runs(store, where=big)}, big
        assert got & {"r8000", "r8001"} == edge, big
    # the planner can use the index (sequential scans disabled to see that it is usable)
    text, args, _ = _compiler(store._index, q, lost_cutoff()).select(q, "exp:1")
    with pg_conn.transaction():
        pg_conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in pg_conn.execute(
            sql.SQL("EXPLAIN " + text).format(s=sql.Identifier(pg_schema)), args).fetchall())
    assert names[0] in plan
    with pytest.raises(QueryError, match="cannot index 'status'"):
        store.create_field_index("status")
