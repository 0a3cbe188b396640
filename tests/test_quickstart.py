"""examples/quickstart.py runs end to end and leaves a readable store behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def _run_example(cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart_prints_the_table_and_writes_the_store(tmp_path: Path) -> None:
    out = _run_example(tmp_path)
    lines = out.strip().splitlines()
    assert lines[0] == "12 runs of pi_mc:1.0"
    header = lines[1].split()
    assert header == ["run_id", "status", "params.n_samples", "params.sampler",
                      "pi_estimate", "abs_error"]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 12
    assert {r[1] for r in rows} == {"success"}
    assert {(r[2], r[3]) for r in rows} == {
        (n, s) for n in ("2000", "20000") for s in ("plain", "antithetic")
    }
    for row in rows:
        assert abs(float(row[4]) - math.pi) < 0.2
        assert math.isclose(float(row[5]), abs(float(row[4]) - math.pi), abs_tol=1e-3)
    assert len({r[0] for r in rows}) == 12  # 12 distinct run ids

    folder = tmp_path / "experiments" / "pi_mc_1.0"
    meta = json.loads((folder / "_meta.json").read_text())
    assert meta["experiment_id"] == "pi_mc:1.0"
    records = sorted((folder / "runs").glob("*.json"))
    assert [p.stem for p in records] == sorted(r[0] for r in rows)
    run_id = records[0].stem
    record = json.loads(records[0].read_text())
    assert record["status"] == "success" and "pi_estimate" in record["metrics"]
    assert record["series"] == ["running_estimate"]
    assert [a["name"] for a in record["artifacts"]] == ["checkpoints"]
    artifact = folder / record["artifacts"][0]["uri"]  # relative to the experiment folder
    checkpoints = json.loads(artifact.read_text())
    assert len(checkpoints["step"]) == 5
    series = json.loads((folder / "results" / run_id / "running_estimate.json").read_text())
    assert series["kind"] == "series" and series["data"]["step"] == checkpoints["step"]
    assert "sampler" in (folder / "logs" / f"{run_id}_run.log").read_text()
    assert len(list((folder / "experiments").glob("*.json"))) == 1


def test_quickstart_second_run_reuses_stored_runs(tmp_path: Path) -> None:
    first = _run_example(tmp_path)
    runs = tmp_path / "experiments" / "pi_mc_1.0" / "runs"
    before = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    second = _run_example(tmp_path)
    assert second == first  # same run ids, same values
    after = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert after == before  # nothing was recomputed or rewritten
