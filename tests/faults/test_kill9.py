"""kill -9 of a launcher at random moments, then an immediate resume (fault scoreboard).

See fault_harness.py for what each trial checks.  Seeds are fixed, so a failing
trial is replayed by its seed (printed with each problem); bench/bench_faults.py
runs many more trials.
"""

from __future__ import annotations

import pytest
from fault_harness import export_trial, make_template, rebuild_trial, run_trials, sweep_trial

#: trials per mode in CI (>= 50 in all); the bench script runs more
TRIALS = {"process": 16, "thread": 20, "serial": 12, "rebuild": 8, "export": 8}


def _assert_clean(tally, scoreboard, key):
    scoreboard.append(tally.line())
    print(tally.line())
    assert tally.tried == TRIALS[key]
    assert (tally.lost, tally.corrupt, tally.misreported) == (0, 0, 0), "\n".join(tally.problems[:20])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["process", "thread", "serial"])
def test_kill9_sweep_then_resume_completes_every_run(tmp_path, scoreboard, mode):
    tally = run_trials(
        f"kill -9 sweep {mode}",
        TRIALS[mode],
        lambda base, seed: sweep_trial(mode, base, seed),
        tmp_path,
        first_seed={"process": 1000, "thread": 2000, "serial": 5000}[mode],
    )
    _assert_clean(tally, scoreboard, mode)
    assert tally.killed_mid_work >= TRIALS[mode] // 2  # the kills hit the work, not only its end


@pytest.mark.slow
def test_kill9_catalog_rebuild_then_query(tmp_path, scoreboard):
    template = make_template(tmp_path)
    tally = run_trials(
        "kill -9 during rebuild",
        TRIALS["rebuild"],
        lambda base, seed: rebuild_trial(template, base, seed),
        tmp_path,
        first_seed=3000,
    )
    _assert_clean(tally, scoreboard, "rebuild")


@pytest.mark.slow
def test_kill9_export_then_export_again(tmp_path, scoreboard):
    template = make_template(tmp_path)
    tally = run_trials(
        "kill -9 during export",
        TRIALS["export"],
        lambda base, seed: export_trial(template, base, seed),
        tmp_path,
        first_seed=4000,
    )
    _assert_clean(tally, scoreboard, "export")
