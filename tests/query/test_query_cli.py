"""`metalab runs ls|show` and `metalab store reindex`."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from query_support import make_doc, write_doc

from metalab.cli import cli
from metalab.store import FileStore


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_runs_ls_filters_sorts_and_formats(fstore: FileStore) -> None:
    root = fstore.config.root
    code, out = run("runs", "ls", "-s", root, "-w", "params.depth >= 3", "-c",
                    "params.depth,metrics.score", "--sort", "-metrics.score", "-n", "2")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["run_id", "experiment_id"]
    assert [ln.split()[0] for ln in lines[1:3]] == ["r019", "r018"]
    assert lines[-1] == "(2 runs)"
    code, out = run("runs", "ls", "-s", root, "-e", "q:1", "-w", "params.depth = 0",
                    "--format", "json", "-c", "params.depth")
    rows = json.loads(out)
    assert [r["run_id"] for r in rows] == ["r000", "r005", "r010", "r015"]
    assert rows[0]["params.depth"] == 0
    code, out = run("runs", "ls", "-s", root, "--format", "csv", "-c", "metrics.score", "-n", "1")
    assert list(csv.reader(io.StringIO(out)))[1][0] == "r000"


def test_runs_ls_reports_query_errors(fstore: FileStore) -> None:
    code, out = run("runs", "ls", "-s", fstore.config.root, "-w", "params.depth >")
    assert code == 1
    assert "Error: expected a value" in out and "^" in out
    code, out = run("runs", "ls", "-s", fstore.config.root, "-w", "params.dept > 1")
    assert code == 1 and "params.depth" in out


def test_runs_show(fstore: FileStore) -> None:
    write_doc(fstore, make_doc(50, metrics={"score": 0.5}))
    fstore.append_log("r050", "run", "".join(f"line {i}\n" for i in range(30)))
    code, out = run("runs", "show", "r050", "-s", fstore.config.root, "--log-lines", "3")
    assert code == 0, out
    assert "run r050  (q:1)" in out and "score = 0.5" in out and "depth = 0" in out
    assert "line 29" in out and "line 26" not in out
    code, out = run("runs", "show", "nope", "-s", fstore.config.root)
    assert code == 1 and "no run 'nope'" in out


def test_store_reindex(fstore: FileStore) -> None:
    code, out = run("store", "reindex", "-s", fstore.config.root)
    assert code == 0 and "20 files read" in out
