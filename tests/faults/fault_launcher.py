"""A launcher the fault tests kill with ``kill -9`` (run as a script, in its own session).

Usage: ``python fault_launcher.py MODE ROOT COUNTER_DIR N [DEST]`` with MODE one of
``process`` / ``thread`` / ``serial`` (a sweep; prints the handle's final counts as
JSON; with DEST, appends the id of each run the handle reports finished to that file), ``rebuild`` (rebuild the query catalog in a
loop), ``export`` (export ROOT to DEST in a loop).  Prints ``ready`` just before
the work starts, so the killer can aim at the work rather than at start-up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from fault_ops import make_experiment

import metalab
from metalab.execution import EventKind, ProcessExecutor, SerialExecutor, ThreadExecutor
from metalab.store import FileStore


def _reporter(path: str):  # type: ignore[no-untyped-def]
    """An event callback appending the id of each run reported finished to ``path``."""

    def on_event(event):  # type: ignore[no-untyped-def]
        if event.kind is EventKind.RUN_FINISHED:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{event.run_id}\n".encode())
            finally:
                os.close(fd)

    return on_event


def main() -> None:
    mode, root, counter, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    exp = make_experiment(counter, n)
    if mode in ("process", "thread", "serial"):
        executor = {"process": lambda: ProcessExecutor(max_workers=2), "thread": lambda: ThreadExecutor(4),
                    "serial": SerialExecutor}[mode]()
        on_event = _reporter(sys.argv[5]) if len(sys.argv) > 5 else None
        print("ready", flush=True)
        handle = metalab.run(exp, store=root, executor=executor, on_event=on_event)
        handle.wait()
        counts = dataclasses.asdict(handle.status)
        # what the files hold at the moment the handle says it is finished
        counts["files_success"] = sum(
            json.loads(p.read_bytes()).get("status") == "success"
            for p in Path(root, "faults_1", "runs").glob("*.json")
        )
        print(json.dumps(counts), flush=True)
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
