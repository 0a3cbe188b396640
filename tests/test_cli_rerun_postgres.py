"""`metalab runs show PREFIX` and `metalab runs rerun` on a PostgreSQL store (the prefix is
looked up in the index; the rerun's record reaches the index)."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

import metalab
from metalab.cli import cli
from metalab.definition import Experiment, grid, seeds

OPS = '''
import os

def work(params, capture):
    if not os.path.exists(params["flag"]):
        raise ValueError("no flag yet")
    capture.metric("y", params["x"] + 0.1)
'''


@pytest.fixture
def pg_locator(pg_url: str, tmp_path: Path) -> Iterator[str]:
    schema = f"rr_{secrets.token_hex(5)}"
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}file_root={tmp_path / 'files'}&schema={schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def ops_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    name = f"rerun_pg_ops_{secrets.token_hex(4)}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(OPS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield __import__(name)
    sys.modules.pop(name, None)


def test_show_prefix_and_rerun_through_the_index(pg_locator: str, ops_module: object,
                                                 tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    exp = Experiment(name="pgrr", version="1", context={}, operation=ops_module.work,  # type: ignore[attr-defined]
                     params=grid(x=[1, 2, 3], flag=[str(flag)]), seeds=seeds(0, 1))
    metalab.run(exp, store=pg_locator).result()
    run_id = sorted(metalab.load_results(pg_locator, experiment_id="pgrr:1").run_ids)[0]

    shown = CliRunner().invoke(cli, ["runs", "show", run_id[:7], "-s", pg_locator])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"run {run_id}  (pgrr:1)") and "error: ValueError" in shown.output
    assert "  git: " in shown.output and "  packages: " in shown.output

    flag.touch()
    done = CliRunner().invoke(cli, ["runs", "rerun", run_id[:7], "-s", pg_locator])
    assert done.exit_code == 0, done.output
    listed = CliRunner().invoke(cli, ["runs", "ls", "-s", pg_locator, "-w", "status = 'success'",
                                      "-c", "metrics.y", "--format", "json"])
    rows = json.loads(listed.output)
    assert [r["run_id"] for r in rows] == [run_id]
    record = metalab.load_results(pg_locator, experiment_id="pgrr:1")[run_id].record
    assert record.attempt == 2 and record.provenance.executor == "rerun"
    assert record.provenance.git  # recorded (a repository, or why there is none)
