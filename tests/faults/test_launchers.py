"""Several launchers of one experiment on one store at once (fault scoreboard).

Every run must execute exactly once in all, and each launcher's handle must
account for every run of the experiment: the runs it executed, the runs that
had already succeeded, and the runs it saw another launcher execute.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fault_harness import LAUNCHER, Outcome, Tally, _env, executions, read_raw
from fault_ops import make_experiment


def _launch_together(root, counter, n, modes):
    procs = [
        subprocess.Popen(
            [sys.executable, str(LAUNCHER), mode, str(root), str(counter), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        for mode in modes
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    # each launcher prints its handle's counts as one JSON line before "finished"
    return [
        json.loads(next(ln for ln in out.decode().splitlines() if ln.startswith("{")))
        for out, _err in outputs
    ]


@pytest.mark.slow
@pytest.mark.parametrize("modes", [["thread", "process"], ["thread", "thread", "process", "process"]])
def test_concurrent_launchers_execute_each_run_once(tmp_path, scoreboard, modes):
    n = 40
    root, counter = tmp_path / "store", tmp_path / "count"
    counter.mkdir()
    statuses = _launch_together(root, counter, n, modes)
    out = Outcome(seed=0)
    ids = [spec.run_id for spec in make_experiment(str(counter), n).iter_specs()]
    records = read_raw(root / "faults_1", out)
    for rid in ids:
        if records.get(rid, {}).get("status") != "success":
            out.problem("lost", f"run {rid} is {records.get(rid, {}).get('status', 'missing')}")
    ran = executions(counter)
    doubles = sorted(rid for rid in ids if ran.get(rid, 0) > 1)
    if doubles:
        out.problem("misreported", f"{len(doubles)} runs executed more than once: {doubles[:5]}")
    if sum(st["success"] for st in statuses) != n:
        out.problem("misreported", f"handles report {[st['success'] for st in statuses]} successes for {n} runs")
    for st in statuses:
        if st["total"] != n or st["done"] != n or st["failed"] or st["cancelled"] or st["lost"]:
            out.problem("misreported", f"a handle ended with {st}")
        if st["files_success"] != n:
            out.problem("misreported", f"a handle finished with {st['files_success']} of {n} runs done in the files")
    tally = Tally(f"{len(modes)} launchers at once")
    tally.add(out)
    scoreboard.append(f"{tally.line(kills=False)}: {n} runs, executions {sum(ran.values())}")
    assert (tally.lost, tally.corrupt, tally.misreported) == (0, 0, 0), "\n".join(tally.problems)
