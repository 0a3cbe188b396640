"""The CLI names fields like queries and tables (params.lr) and writes numbers in full."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

import metalab
from metalab.cli import cli
from metalab.model import RunRecord, Status
from metalab.store import FileStore

LR = 0.123456789012345
SCORE = 1 / 3


def test_runs_ls_uses_field_names_and_full_precision(tmp_path):
    store = FileStore(tmp_path, experiment_id="p:1")
    store.put_run_record(RunRecord(run_id="r1", experiment_id="p:1", status=Status.SUCCESS,
                                   params={"lr": LR}, metrics={"score": SCORE}))
    args = ["runs", "ls", "-s", str(tmp_path), "-e", "p:1", "-c", "params.lr,metrics.score"]
    out = CliRunner().invoke(cli, [*args, "--format", "csv"])
    assert out.exit_code == 0, out.output
    row = next(csv.DictReader(io.StringIO(out.output)))
    assert float(row["params.lr"]) == LR and float(row["metrics.score"]) == SCORE
    data = json.loads(CliRunner().invoke(cli, [*args, "--format", "json"]).output)
    assert data[0]["params.lr"] == LR and data[0]["metrics.score"] == SCORE
    # the same names are DataFrame columns and query fields
    df = metalab.load_results(store).to_dataframe()
    assert df.loc[0, "params.lr"] == LR
    assert len(metalab.load_results(store).where("params.lr > 0.1")) == 1
