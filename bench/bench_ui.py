"""``metalab ui`` on a large generated experiment (FileStore catalog, and with ``--pg``
PostgreSQL filled from the same files by ``rebuild_index``), all figures in one run.

(a) the runs page's first screen (50 rows, 10 columns, with a filter), as HTML, against
    the query engine alone for the same rows (``store.query_runs`` with the same filter,
    columns and limit).  Targets: < 1 s and within 1.5x of the engine.
(b) the same page's JSON (``/api/.../runs``), its next page (keyset cursor) and the
    same page sorted by a metric (``sort=-metrics.m0``: every matching run ordered).
(c) a plot of the whole experiment grouped over seeds (``/api/.../plot``: line of a
    metric against a param, one line per model, mean and 95% CI).  Target: < 2 s.
(d) a run page (``/runs/<id>``).  Target: < 200 ms.
(e) the server's resident memory before and after 100 page loads.  Target: flat.
(f) the experiments page's JSON (``/api/experiments``: status counts, progress,
    last activity) on a new server (nothing reused from before).

Requests go through Starlette's test client in the same process (the ASGI app
and its templates, no network).  The store: parameter cases of ``lr`` (10
values) x ``width`` (10) x ``model`` (5), each repeated over seeds, 10 metrics per
run, written without fsync (a benchmark fixture); run ids are 16 hex digits of
a hash, like metalab's.

Usage: python bench/bench_ui.py [--runs 1000000] [--dir D] [--reuse] [--no-plot] [--pg]
                                [--json bench/out/ui.json]

Keys of the output are prefixed ``catalog_`` and ``pg_`` by store.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import best_of, machine
from starlette.testclient import TestClient

from metalab.model import RunRecord, Status
from metalab.store import FileStore, FileStoreConfig
from metalab.ui import create_app

EXP = "uibench:1"
WHERE = "params.lr < 0.05 and metrics.m0 > 0.5"
COLUMNS = ["params.lr", "params.width", "params.model", *(f"metrics.m{k}" for k in range(7))]
LRS = [0.001 * 2**k for k in range(10)]
WIDTHS = [16 * (k + 1) for k in range(10)]
MODELS = ["mlp", "cnn", "resnet", "vit", "rnn"]
CASES = len(LRS) * len(WIDTHS) * len(MODELS)
PAGE_LOADS = 100

out: dict[str, Any] = {}


PREFIX = [""]


def log(key: str, value: Any) -> None:
    key = PREFIX[0] + key
    out[key] = value
    print(f"{key}: {value}", flush=True)


def write_runs(folder: str, n: int) -> None:
    """``n`` run files: the cases in turn, each over seeds ``i // CASES``."""
    runs = os.path.join(folder, "runs")
    os.makedirs(runs, exist_ok=True)
    rng = random.Random(1)
    base = RunRecord(run_id="x", experiment_id=EXP, status=Status.SUCCESS).to_dict()
    for i in range(n):
        case, replicate = i % CASES, i // CASES
        lr, width, model = (LRS[case % 10], WIDTHS[case // 10 % 10], MODELS[case // 100])
        rid = hashlib.sha256(f"ui:{i}".encode()).hexdigest()[:16]
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
        doc = dict(base)
        doc.update(
            run_id=rid, params={"lr": lr, "width": width, "model": model},
            seed={"root_seed": 0, "replicate_index": replicate},
            metrics={f"m{k}": rng.random() for k in range(10)},
            started_at=start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            finished_at=(start + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            duration_ms=3000.0)
        with open(os.path.join(runs, f"{rid}.json"), "wb") as fh:
            fh.write(orjson.dumps(doc))


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_store(root: str, n: int, reuse: bool) -> FileStore:
    store = FileStore(FileStoreConfig(root=root, experiment_id=EXP))
    folder = store.get_working_directory()
    runs = os.path.join(folder, "runs")
    if not (reuse and os.path.isdir(runs) and len(os.listdir(runs)) >= n):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "_meta.json"), "wb") as fh:
            fh.write(orjson.dumps({"format": "metalab-filestore", "layout_version": 1,
                                   "experiment_id": EXP}))
        t0 = time.perf_counter()
        write_runs(folder, n)
        log("generate_s", round(time.perf_counter() - t0, 1))
    t0 = time.perf_counter()
    store.reindex_catalog()
    log("catalog_build_s", round(time.perf_counter() - t0, 1))
    return store


def measure(store: Any, client: TestClient, plot: bool = True) -> None:
    params = {"where": WHERE, "columns": ",".join(COLUMNS)}
    page_url = f"/experiments/{EXP}"
    # one untimed call of each first: the first queries after the catalog build
    # warm SQLite's cache, the first page reads the field sample
    store.query_runs(EXP, WHERE, columns=COLUMNS, limit=51)
    client.get(page_url, params=params)
    engine = best_of(lambda: store.query_runs(EXP, WHERE, columns=COLUMNS, limit=51), repeat=7)
    log("a_engine_first_50_s", round(engine, 4))
    page = best_of(lambda: client.get(page_url, params=params), repeat=7)
    log("a_runs_page_html_s", round(page, 4))
    log("a_page_over_engine_x", round(page / engine, 2))
    api = f"/api/experiments/{EXP}/runs"
    log("b_runs_api_json_s", round(best_of(lambda: client.get(api, params=params), repeat=5), 4))
    after = client.get(api, params=params).json()["next"]
    log("b_next_page_json_s", round(best_of(
        lambda: client.get(api, params={**params, "after": after}), repeat=5), 4))
    log("b_sorted_by_metric_json_s", round(best_of(
        lambda: client.get(api, params={**params, "sort": "-metrics.m0"}), repeat=3), 4))
    if plot:
        measure_plot(client)
    rid = client.get(api, params={"limit": 1}).json()["rows"][0]["run_id"]
    log("d_run_page_s", round(best_of(lambda: client.get(f"/runs/{rid}"), repeat=5), 4))
    before = rss_mib()
    for i in range(PAGE_LOADS):
        client.get(page_url, params={**params, "sort": "-metrics.m0" if i % 2 else "params.lr"})
    log("e_rss_before_mib", round(before, 1))
    log("e_rss_after_100_pages_mib", round(rss_mib(), 1))


def measure_experiments_page(store: Any) -> None:
    """(f): ``/api/experiments`` on a new server each time (best of 3)."""
    best = math.inf
    for _ in range(3):
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            t0 = time.perf_counter()
            answer = client.get("/api/experiments")
            best = min(best, time.perf_counter() - t0)
            assert answer.status_code == 200, answer.text[:500]
    log("f_experiments_page_api_fresh_s", round(best, 3))
    log("f_counts", answer.json()["experiments"][0]["counts"])


def measure_store(name: str, store: Any, plot: bool) -> None:
    PREFIX[0] = f"{name}_"
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        measure(store, client, plot=plot)
    measure_experiments_page(store)
    PREFIX[0] = ""


def measure_plot(client: TestClient) -> None:
    spec = {"kind": "line", "x": "params.lr", "y": "metrics.m0", "group": "params.model",
            "over_seeds": "true", "band": "ci95"}
    url = f"/api/experiments/{EXP}/plot"
    answer = client.get(url, params=spec)
    assert answer.status_code == 200, answer.text[:500]
    log("c_plot_bytes", len(answer.content))
    log("c_grouped_plot_whole_experiment_s",
        round(best_of(lambda: client.get(url, params=spec), repeat=3), 3))


def measure_pg(folder: str, files: FileStore, plot: bool) -> None:
    from metalab.services import start_server, stop_server
    from metalab.store import PostgresStore

    pg_dir = os.path.join(folder, "pg")
    url = start_server(pg_dir, fast=True).url
    try:
        t0 = time.perf_counter()
        pg = PostgresStore.from_filestore(url, files, rebuild=True)
        log("pg_rebuild_index_s", round(time.perf_counter() - t0, 1))
        measure_store("pg", pg, plot)
        pg.close()
    finally:
        stop_server(pg_dir, mode="fast", remove=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the run files already in --dir")
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "ui.json"))
    ap.add_argument("--no-plot", action="store_true", help="skip (c), the grouped plot")
    ap.add_argument("--pg", action="store_true",
                    help="also measure PostgreSQL (a throwaway server filled by rebuild_index)")
    ap.add_argument("--pg-only", action="store_true", help="measure PostgreSQL only")
    args = ap.parse_args()
    log("machine", machine())
    log("runs", args.runs)
    log("started", datetime.now(UTC).isoformat(timespec="seconds"))
    folder = args.dir or tempfile.mkdtemp(prefix="mlbench-ui-")
    os.chmod(folder, 0o755)  # the PostgreSQL server user must reach its data folder
    store = open_store(os.path.join(folder, "store"), args.runs, args.reuse)
    if not args.pg_only:
        measure_store("catalog", store, plot=not args.no_plot)
    if args.pg or args.pg_only:
        measure_pg(folder, store, plot=not args.no_plot)
    log("finished", datetime.now(UTC).isoformat(timespec="seconds"))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
