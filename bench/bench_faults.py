"""The kill -9 fault trials of tests/faults, many more of them (not a test).

Usage: .venv/bin/python bench/bench_faults.py [--trials 100] [--modes process,thread,rebuild,export]

Prints one scoreboard line per mode (tried / lost / corrupt / misreported, and
how many kills hit the work rather than its end) and the problems found, with
the seed that replays each.  CI runs the same trials, fewer of them
(tests/faults/test_kill9.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "faults"))

from _common import machine  # noqa: E402
from fault_harness import (  # noqa: E402
    export_trial,
    make_template,
    rebuild_trial,
    run_trials,
    sweep_trial,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="trials per mode")
    ap.add_argument("--modes", default="process,thread,rebuild,export")
    ap.add_argument("--first-seed", type=int, default=100_000)
    args = ap.parse_args()
    print(json.dumps(machine()))
    with tempfile.TemporaryDirectory(prefix="metalab-faults-") as tmp:
        base = Path(tmp)
        template = make_template(base / "tpl") if {"rebuild", "export"} & set(args.modes.split(",")) else None
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            if mode in ("process", "thread"):
                def trial(b: Path, s: int, mode: str = mode) -> object:
                    return sweep_trial(mode, b, s)
            elif mode == "rebuild":
                def trial(b: Path, s: int) -> object:
                    return rebuild_trial(template, b, s)
            elif mode == "export":
                def trial(b: Path, s: int) -> object:
                    return export_trial(template, b, s)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
            tally = run_trials(f"kill -9 {mode}", args.trials, trial, base, args.first_seed)
            print(f"{tally.line()} in {time.perf_counter() - t0:.0f} s", flush=True)
            for problem in tally.problems[:20]:
                print("   ", problem)


if __name__ == "__main__":
    main()
