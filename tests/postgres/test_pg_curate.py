"""Tags, notes and deletions reach the PostgreSQL index at once, and survive a kill."""

from __future__ import annotations

import os

from pg_helpers import file_docs, index_rows, records

import metalab
from metalab.store import PostgresStore
from metalab.store._postgres._curate import PostgresCuration


def _index_tags(pg_conn, schema: str, experiment_id: str) -> dict[str, list[str]]:
    rows = pg_conn.execute(
        f'SELECT run_id, tags FROM "{schema}".runs WHERE experiment_id = %s ORDER BY run_id',
        (experiment_id,)).fetchall()
    return {rid: list(tags) for rid, tags in rows}


def _two_experiments(make_store) -> PostgresStore:
    """Three runs of exp:1 and one of exp:2, indexed; the store of exp:1."""
    store = make_store("exp:1")
    other = make_store("exp:2")
    for r in records("exp:1", 3):
        store.put_run_record(r)
    other.put_run_record(records("exp:2", 1)[0])
    store.flush()
    other.flush()
    return store


def test_run_tags_and_note_are_in_the_index_rows_when_the_call_returns(
        make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1")
    for r in records("exp:1", 4, tags=("t0",)):
        store.put_run_record(r)
    store.flush()
    assert store.annotate_runs(["r00001", "r00002"], add_tags=["best"], note="kept") == [
        "r00001", "r00002"]
    # straight from the index tables, no flush or catch-up asked for
    assert _index_tags(pg_conn, pg_schema, "exp:1") == {
        "r00000": ["t0"], "r00001": ["t0", "best"], "r00002": ["t0", "best"], "r00003": ["t0"]}
    rows = index_rows(pg_conn, pg_schema)
    assert rows[("exp:1", "r00001")]["notes"] == "kept"
    assert rows == file_docs(file_root, "exp:1")
    assert not store.index_is_behind()  # so queries are answered by the index
    found = store.query_runs(where='tags contains "best"', columns=["run_id"])
    assert [d["run_id"] for d in found] == ["r00001", "r00002"]
    store.annotate_runs(["r00001"], remove_tags=["t0"])
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00001"] == ["best"]


def test_experiment_tags_reach_index_rows_new_runs_and_a_rebuild(
        make_store, pg_conn, pg_schema, file_root) -> None:
    store = _two_experiments(make_store)
    assert store.annotate_experiment(add_tags=["sgd"])
    assert set(map(tuple, _index_tags(pg_conn, pg_schema, "exp:1").values())) == {("sgd",)}
    store.put_run_record(records("exp:1", 1, start=3)[0])  # a run of later gets them too
    store.flush()
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00003"] == ["sgd"]
    assert _index_tags(pg_conn, pg_schema, "exp:2") == {"r00000": []}
    store.rebuild_index()  # the index rebuilt from the files carries them
    assert index_rows(pg_conn, pg_schema, "exp:1") == file_docs(file_root, "exp:1")
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00000"] == ["sgd"]


def test_delete_experiment_drops_its_rows_and_only_its_rows(
        make_store, pg_conn, pg_schema, file_root) -> None:
    _two_experiments(make_store)
    collection = make_store(None)
    assert collection.delete_experiment("exp:1")
    assert _index_tags(pg_conn, pg_schema, "exp:1") == {}
    for table in ("experiments", "experiment_manifests", "run_records", "derived"):
        left = pg_conn.execute(f'SELECT count(*) FROM "{pg_schema}".{table} '
                               "WHERE experiment_id = 'exp:1'").fetchone()
        assert left == (0,), table
    assert collection.index.indexed_experiments() == ["exp:2"]
    assert set(index_rows(pg_conn, pg_schema)) == {("exp:2", "r00000")}
    assert collection.list_experiments() == ["exp:2"]
    assert not (file_root / "exp_1").exists()
    assert collection.query_runs(where="status = 'success'", columns=["run_id"]) == [
        {"run_id": "r00000", "experiment_id": "exp:2", "status": "success",
         "started_at": "2026-01-02T03:04:05.123456Z"}]


def test_a_tagger_killed_before_the_index_heard_of_it_is_caught_up(
        make_store, pg_conn, pg_schema, file_root) -> None:
    """The mark left in the journal before the files changed makes the next
    catch-up send the change; meanwhile reads use the files (with the tags)."""
    store = make_store("exp:1")
    for r in records("exp:1", 3):
        store.put_run_record(r)
    store.close()
    parent = make_store("exp:1")
    assert not parent.index_is_behind()
    pid = os.fork()
    if pid == 0:  # the child tags, then dies before sending anything
        try:
            PostgresCuration._caught_up = lambda self: os._exit(0)  # type: ignore[method-assign]
            parent.config.connect().annotate_runs(["r00002"], add_tags=["late"])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00002"] == []  # not sent
    assert parent.index_is_behind()
    found = parent.query_runs(where='tags contains "late"', columns=["run_id"])
    assert [d["run_id"] for d in found] == ["r00002"]  # (from the files)
    parent.reconcile()
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00002"] == ["late"]
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")
    assert isinstance(parent, PostgresStore) and not parent.index_is_behind()


def test_results_from_the_index_tag_and_a_deleted_run_leaves_the_index(
        make_store, pg_conn, pg_schema, file_root) -> None:
    store = make_store("exp:1")
    for r in records("exp:1", 3):
        store.put_run_record(r)
    store.flush()
    results = metalab.load_results(store)  # (columns from the index)
    assert sorted(results.where("params.i >= 1").tag("late")) == ["r00001", "r00002"]
    assert _index_tags(pg_conn, pg_schema, "exp:1") == {
        "r00000": [], "r00001": ["late"], "r00002": ["late"]}
    store.delete_run("r00002")
    found = store.query_runs(where='tags contains "late"', columns=["run_id"])
    assert [d["run_id"] for d in found] == ["r00001"]
    store.flush()
    assert set(index_rows(pg_conn, pg_schema)) == {("exp:1", "r00000"), ("exp:1", "r00001")}
    assert not (file_root / "exp_1" / "annotations" / "r00002.json").exists()
    assert index_rows(pg_conn, pg_schema) == file_docs(file_root, "exp:1")


def test_cli_tags_and_removes_through_a_postgresql_locator(
        make_store, pg_url, pg_conn, pg_schema, file_root) -> None:
    from click.testing import CliRunner

    from metalab.cli import cli

    _two_experiments(make_store)
    sep = "&" if "?" in pg_url else "?"
    locator = f"{pg_url}{sep}file_root={file_root}&schema={pg_schema}"

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "tagged 2 run(s)" in invoke("runs", "tag", "-s", locator, "-e", "exp:1",
                                       "-w", "params.i >= 1", "-t", "late")
    assert _index_tags(pg_conn, pg_schema, "exp:1")["r00002"] == ["late"]
    out = invoke("runs", "ls", "-s", locator, "-w", 'tags contains "late"', "-c", "tags")
    assert "r00001" in out and "r00002" in out and "r00000" not in out
    invoke("runs", "rm", "-s", locator, "-e", "exp:1", "r00001", "--yes")
    invoke("store", "rm", "-s", locator, "-e", "exp:2", "--yes")
    assert set(index_rows(pg_conn, pg_schema)) == {("exp:1", "r00000"), ("exp:1", "r00002")}
