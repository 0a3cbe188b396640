"""`metalab runs ls --format csv/json` write numbers exactly; the human table rounds them."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from metalab.cli import cli
from metalab.model import RunRecord, Status
from metalab.store import FileStoreConfig

EXP = "prec:1"
#: values a rounded output would change (or JSON would turn into null)
VALUES = {
    "a": 0.1 + 0.2,
    "b": 1 / 3,
    "c": 123456789.123456789,
    "d": 1e-300,
    "e": math.inf,
    "f": -math.inf,
    "g": math.nan,
}


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    with FileStoreConfig(root=str(root)).scoped(EXP).connect() as store:
        for i, (name, value) in enumerate(VALUES.items()):
            store.put_run_record(RunRecord(
                run_id=f"{i:016x}", experiment_id=EXP, status=Status.SUCCESS,
                params={"name": name, "lr": 0.1 * (i + 1), "big": 2**53 + i},
                metrics={"x": value},
            ))
    return root


def _same(read: float, expected: float) -> bool:
    return (math.isnan(read) and math.isnan(expected)) or read == expected


def test_csv_round_trips_every_number(root: Path) -> None:
    out = invoke("runs", "ls", "-s", str(root), "-c", "params.name,params.lr,params.big,metrics.x",
                 "--format", "csv").output
    rows = {r["params.name"]: r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == set(VALUES)
    for i, (name, value) in enumerate(VALUES.items()):
        assert _same(float(rows[name]["metrics.x"]), value), (name, rows[name]["metrics.x"])
        assert float(rows[name]["params.lr"]) == 0.1 * (i + 1)
        assert int(rows[name]["params.big"]) == 2**53 + i
    assert rows["e"]["metrics.x"] == "Infinity" and rows["g"]["metrics.x"] == "NaN"


def test_csv_reads_back_exactly_with_pandas(root: Path) -> None:
    pd = pytest.importorskip("pandas")
    out = invoke("runs", "ls", "-s", str(root), "-c", "params.name,metrics.x",
                 "--format", "csv").output
    frame = pd.read_csv(io.StringIO(out)).set_index("params.name")
    for name, value in VALUES.items():
        assert _same(float(frame.loc[name, "metrics.x"]), value), name


def test_json_round_trips_every_number(root: Path) -> None:
    out = invoke("runs", "ls", "-s", str(root), "-c", "params.name,params.lr,metrics.x",
                 "--format", "json").output
    rows = {r["params.name"]: r for r in json.loads(out)}
    assert all(r["metrics.x"] is not None for r in rows.values())
    for i, (name, value) in enumerate(VALUES.items()):
        assert _same(float(rows[name]["metrics.x"]), value), name
        assert rows[name]["params.lr"] == 0.1 * (i + 1)
    assert rows["f"]["metrics.x"] == "-Infinity"


def test_the_human_table_stays_rounded(root: Path) -> None:
    out = invoke("runs", "ls", "-s", str(root), "-c", "params.name,metrics.x").output
    assert "0.3 " in out or out.rstrip().endswith("0.3") or "  0.3\n" in out
    assert "0.30000000000000004" not in out and "0.3333333333333333" not in out
    assert "0.333333" in out
