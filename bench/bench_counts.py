"""Counting the runs of a large experiment by status, all figures in one run.

On the store of ``bench_query.py`` (reuse its ``--dir``; the catalog is brought
up to date first, untimed):

* ``scan_count_s``: counting by reading every run document (what a store
  without an index answering counts does: ``Counter`` of the status readers see);
* ``old_ui_query_every_run_s``: the query the UI's status counts made before they
  were asked of the index (every run's status and times, ``query_runs(columns=
  ["finished_at"])``);
* ``status_counts_s``: :meth:`Store.status_counts` (the catalog's one ``GROUP
  BY``), best of 5;
* ``status_overview_s``: :meth:`Store.status_overview` (the same ``GROUP BY`` with
  the latest start and finish: what the experiments page asks), best of 5, and
  ``status_overview_planned_s`` with the manifest's planned ids (when it lists them);
* ``ui_experiments_page_api_s``: the experiments page's JSON (``/api/experiments``:
  counts, progress and last activity of each experiment), the first request of a
  new server (nothing kept), best of 3.

``--make N`` writes a store of N runs into ``--dir`` first (``bench_query.py``'s
runs, without its other measurements) when it holds none; ``--planned`` writes a
manifest listing the run ids and :data:`NOT_STARTED` more (runs not started yet),
so the experiments page counts ``not_started`` against the planned ids.

Usage: python bench/bench_counts.py --dir D [--make N] [--planned] [--json bench/out/counts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, machine
from starlette.testclient import TestClient

from metalab.query import lost_cutoff, status_at_cutoff
from metalab.store import FileStore, FileStoreConfig
from metalab.ui import create_app

EXP = "bench:1"  # (bench_query.py's experiment)
#: planned runs with no record in the manifest ``--planned`` writes
NOT_STARTED = 1000
#: fresh servers whose first experiments page is timed (the best is kept)
UI_REPEAT = 3

out: dict[str, Any] = {}


def log(key: str, value: Any) -> None:
    out[key] = value
    print(f"{key}: {value}", flush=True)


def load_1min() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def make_store(root: str, runs: int) -> None:
    """``runs`` run files of ``bench_query.py`` under ``root`` (no fsync: a fixture)."""
    from bench_query import store_folder, write_runs

    _, folder = store_folder(root)
    t0 = time.perf_counter()
    write_runs(folder, 0, runs, 1)
    log("generate_s", round(time.perf_counter() - t0, 1))


def plan(fs: FileStore) -> None:
    """A manifest listing every recorded run id and NOT_STARTED more."""
    ids = [str(r["run_id"]) for r in fs.query_runs(EXP, None, columns=["run_id"])]
    ids += [f"notstarted{i:06d}" for i in range(NOT_STARTED)]
    fs.put_experiment_manifest(EXP, {"experiment_id": EXP, "run_ids": ids,
                                     "total_runs": len(ids)})
    log("planned_runs", len(ids))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, help="the --dir of an earlier bench_query.py run")
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "counts.json"))
    ap.add_argument("--make", type=int, default=0,
                    help="write this many runs into --dir first if it holds no store")
    ap.add_argument("--planned", action="store_true",
                    help="write a manifest listing the planned run ids (and some not started)")
    args = ap.parse_args()
    root = os.path.join(args.dir, "store")
    log("machine", machine())
    if args.make and not os.path.isdir(root):
        make_store(root, args.make)
    fs = FileStore(FileStoreConfig(root=root, experiment_id=EXP))
    if args.planned:
        plan(fs)
    fs.query_runs(limit=1)  # the catalog brought up to date (untimed)
    log("load_1min", load_1min())
    cutoff = lost_cutoff()
    t0 = time.perf_counter()
    Counter(status_at_cutoff(d, cutoff) for d in fs.iter_run_documents())
    log("scan_count_s", round(time.perf_counter() - t0, 2))
    log("old_ui_query_every_run_s", round(best_of(
        lambda: fs.query_runs(EXP, None, columns=["finished_at"]), repeat=1), 2))
    log("status_counts", fs.status_counts())
    log("status_counts_s", round(best_of(fs.status_counts, repeat=5), 4))
    log("status_overview_s", round(best_of(fs.status_overview, repeat=5), 4))
    planned = (fs.get_experiment_manifest(EXP) or {}).get("run_ids")
    if isinstance(planned, list):
        ids = frozenset(planned)
        log("status_overview_planned_s", round(best_of(
            lambda: fs.status_overview(planned=ids), repeat=5), 4))
    times = []
    for _ in range(UI_REPEAT):  # a new server each time: no summary kept from before
        with TestClient(create_app(fs), base_url="http://127.0.0.1") as client:
            t0 = time.perf_counter()
            answer = client.get("/api/experiments")
            times.append(time.perf_counter() - t0)
            assert answer.status_code == 200, answer.text[:300]
    log("ui_experiments_page_api_s", round(min(times), 4))
    log("ui_counts", answer.json()["experiments"][0]["counts"])
    log("load_1min_end", load_1min())
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
