"""`metalab store rebuild-index|reconcile` and `metalab postgres start|stop|status`,
against real PostgreSQL servers."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from metalab.cli import cli
from metalab.model import RunRecord, Status
from metalab.services import stop_server
from metalab.store import FileStoreConfig, PostgresStoreConfig


def _fill(root: Path, experiment_id: str, n: int) -> None:
    with FileStoreConfig(root=str(root)).scoped(experiment_id).connect() as store:
        for i in range(n):
            store.put_run_record(RunRecord(
                run_id=f"{i:016x}", experiment_id=experiment_id,
                status=Status.SUCCESS if i % 3 else Status.FAILED,
                params={"i": i}, metrics={"score": float(i)},
            ))


def _indexed(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT experiment_id, count(*) FROM {}.runs GROUP BY 1").format(
                sql.Identifier(schema))
        ).fetchall()
    return {e: int(c) for e, c in rows}


@pytest.fixture
def pg_locator(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(locator, schema, file_root) of a PostgreSQL store on a fresh schema."""
    schema = f"cli_{secrets.token_hex(5)}"
    root = tmp_path / "files"
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}file_root={root}&schema={schema}", schema, root
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_rebuild_index_all_then_one_experiment(pg_url: str, pg_locator) -> None:
    locator, schema, root = pg_locator
    _fill(root, "a:1", 7)
    _fill(root, "b:1", 4)
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "--store", locator])
    assert result.exit_code == 0, result.output
    assert "(all experiments): 11 runs indexed" in result.output
    assert _indexed(pg_url, schema) == {"a:1": 7, "b:1": 4}

    _fill(root, "b:1", 6)  # two more runs of b, written behind the index's back
    result = CliRunner().invoke(
        cli, ["store", "rebuild-index", "--store", locator, "--experiment", "b:1"]
    )
    assert result.exit_code == 0, result.output
    assert "(experiment b:1): 6 runs indexed" in result.output
    assert _indexed(pg_url, schema) == {"a:1": 7, "b:1": 6}


def test_reconcile_replays_deferred_writes(pg_url: str, pg_locator) -> None:
    locator, schema, root = pg_locator
    config = PostgresStoreConfig(connection_string=pg_url, file_root=str(root), schema=schema,
                                 experiment_id="e:1", index_mode="deferred")
    with config.connect() as store:
        store.index.ping()  # the index tables exist; the writes below only reach the journal
        for i in range(5):
            store.put_run_record(RunRecord(run_id=f"r{i}", experiment_id="e:1",
                                           status=Status.SUCCESS, params={"i": i}))
        assert store.index_is_behind()
    result = CliRunner().invoke(cli, ["store", "reconcile", "--store", locator])
    assert result.exit_code == 0, result.output
    assert "replayed 5 journal items" in result.output
    assert _indexed(pg_url, schema) == {"e:1": 5}
    with config.connect() as store:
        assert not store.index_is_behind()

    with psycopg.connect(pg_url, autocommit=True) as conn:  # the index loses a row
        conn.execute(sql.SQL("DELETE FROM {}.runs WHERE run_id = 'r0'").format(
            sql.Identifier(schema)))
    result = CliRunner().invoke(cli, ["store", "reconcile", "--store", locator, "--full"])
    assert result.exit_code == 0, result.output
    assert "re-synced experiments: e:1 (5 runs)" in result.output
    assert _indexed(pg_url, schema) == {"e:1": 5}


def test_rebuild_index_works_on_every_store_with_an_index(tmp_path: Path) -> None:
    # (once PostgreSQL only; a FileStore rebuilds its query catalog)
    _fill(tmp_path, "a:1", 3)
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "(all experiments): 3 files read" in result.output
    assert "Traceback" not in result.output


def test_rebuild_index_unreachable_server_names_it_without_password(tmp_path: Path) -> None:
    locator = f"postgresql://u:S3cretPw@127.0.0.1:9/db?file_root={tmp_path}&connect_timeout=2"
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "--store", locator])
    assert result.exit_code == 1
    assert "127.0.0.1:9/db" in result.output
    assert "S3cretPw" not in result.output


def test_postgres_start_status_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tempfile.mkdtemp(prefix="metalab-clipg-")
    password = "pw-" + secrets.token_hex(8)
    monkeypatch.setenv("ML_TEST_PW", password)
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["postgres", "start", "--data-dir", folder,
                                     "--password-env", "ML_TEST_PW", "--file-root", "/data/x"])
        assert result.exit_code == 0, result.output
        assert password not in result.output
        locator = next(line.split(": ", 1)[1] for line in result.output.splitlines()
                       if line.startswith("store locator: "))
        assert locator.startswith("postgresql://postgres@127.0.0.1:")
        assert locator.endswith("?file_root=/data/x")
        port = int(locator.split("127.0.0.1:")[1].split("/")[0])
        # the server requires the password, and it works
        url = locator.split("?")[0]
        with psycopg.connect(url, password=password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, password="wrong", connect_timeout=5).close()

        result = runner.invoke(cli, ["postgres", "status", "--data-dir", folder])
        assert result.exit_code == 0, result.output
        assert f"running on 127.0.0.1:{port}" in result.output
        assert password not in result.output

        again = runner.invoke(cli, ["postgres", "start", "--data-dir", folder])
        assert again.exit_code == 0 and "already running" in again.output

        result = runner.invoke(cli, ["postgres", "stop", "--data-dir", folder])
        assert result.exit_code == 0 and "stopped" in result.output
        result = runner.invoke(cli, ["postgres", "status", "--data-dir", folder])
        assert result.exit_code == 3 and "stopped" in result.output
        result = runner.invoke(cli, ["postgres", "stop", "--data-dir", folder])
        assert result.exit_code == 0 and "no PostgreSQL server running" in result.output
        for path in Path(folder).rglob("*"):  # the password is stored nowhere in clear
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
    finally:
        stop_server(folder, mode="immediate", remove=True)


def test_postgres_start_with_missing_password_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["postgres", "start", "--data-dir", str(tmp_path / "pg"),
                                      "--password-env", "ML_SURELY_NOT_SET_VAR"])
    assert result.exit_code == 1
    assert "ML_SURELY_NOT_SET_VAR" in result.output
    assert not (tmp_path / "pg").exists()
