"""A launcher the fault tests kill with ``kill -9`` (run as a script, in its own session).

Usage: ``python fault_launcher.py MODE ROOT COUNTER_DIR N [DEST]`` with MODE one of
``process`` / ``thread`` (a sweep), ``rebuild`` (rebuild the query catalog in a
loop), ``export`` (export ROOT to DEST in a loop).  Prints ``ready`` just before
the work starts, so the killer can aim at the work rather than at start-up.
"""

from __future__ import annotations

import sys

from fault_ops import make_experiment

import metalab
from metalab.execution import ProcessExecutor, ThreadExecutor
from metalab.store import FileStore


def main() -> None:
    mode, root, counter, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    exp = make_experiment(counter, n)
    if mode in ("process", "thread"):
        executor = ProcessExecutor(max_workers=2) if mode == "process" else ThreadExecutor(4)
        print("ready", flush=True)
        metalab.run(exp, store=root, executor=executor).wait()
    elif mode == "rebuild":
        store = FileStore(root, exp.experiment_id)
        print("ready", flush=True)
        while True:
            store.reindex_catalog()
    elif mode == "export":
        print("ready", flush=True)
        while True:
            metalab.export_store(root, sys.argv[5], overwrite=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("finished", flush=True)


if __name__ == "__main__":
    main()
