"""Query benchmarks on a generated store, all figures measured in the same run.

(a) a selective query (about 1% of the runs, 3 columns) through the FileStore
    catalog and through PostgreSQL against a full scan of the run files.
    Target: >= 50x faster than the scan for both.
(b) incremental catalog refresh after 1,000 new runs (written with their
    change-log lines, as the FileStore writes them) against reading and
    parsing those 1,000 files, round after round over two whole merge cycles
    of the catalog (rows appended, then merged): the median round, and the mean (the amortized
    cost, merges included).  Target: <= 2x.  Also measured apart: the
    full-listing fallback (1,000 more runs copied in without log lines).
(c) ``load_results(..., columns=30 fields).to_dataframe()`` of about 100k runs
    from each store.

Run ids are 16 hex digits of a hash, like metalab's, so new runs fall at
random places among the catalogued ones (sequential ids would flatter the
catalog's file index).

The store (20 params, 10 metrics per run) is written without fsync (a
benchmark fixture, not the write path); PostgreSQL is bulk-loaded with
``rebuild_index`` (binary COPY); its selective query is measured as a plain
scan of the narrow ``runs`` table, then again after ``create_field_index`` on
the two filtered fields.

Usage: python bench/bench_query.py [--runs 1000000] [--json bench/out/query.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import best_of, machine

from metalab import load_results
from metalab.model import RunRecord, Status
from metalab.store import FileStore, FileStoreConfig
from metalab.store._base import Store
from metalab.store._changes import note_change
from metalab.store._index import Catalog

EXP = "bench:1"
WHERE = "params.p1 < 10 and params.p0 < 0.1"  # ~1%
COLUMNS = ["params.p0", "params.p1", "metrics.m0"]
WIDE_WHERE = "params.p1 < 10"  # ~10%
WIDE_COLUMNS = [f"params.p{i}" for i in range(20)] + [f"metrics.m{i}" for i in range(10)]

out: dict[str, object] = {}


def log(key: str, value: object) -> None:
    out[key] = value
    print(f"{key}: {value}", flush=True)


def template() -> dict[str, object]:
    rec = RunRecord(run_id="x", experiment_id=EXP, status=Status.SUCCESS)
    return rec.to_dict()


def run_id(i: int, seed: int) -> str:
    """A run id like metalab's (16 hex digits of a hash): new runs fall at random
    places among the catalogued ones, as they do in a real store."""
    return hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:16]


def make_doc(i: int, rng: random.Random, base: dict[str, object], rid: str) -> dict[str, object]:
    doc = dict(base)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    params: dict[str, object] = {"p0": rng.random(), "p1": rng.randrange(100)}
    for k in range(2, 20):
        params[f"p{k}"] = (rng.random(), rng.randrange(1000), f"name{rng.randrange(50)}",
                           rng.random() < 0.5)[k % 4]
    doc.update(
        run_id=rid,
        params=params,
        metrics={f"m{k}": rng.random() for k in range(10)},
        started_at=start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        finished_at=(start + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        duration_ms=3000.0,
        tags=["bench"],
    )
    return doc


def write_runs(folder: str, start: int, n: int, seed: int, logged: bool = False) -> list[str]:
    """Run files (no fsync); ``logged`` adds the change-log line the FileStore writes."""
    runs = os.path.join(folder, "runs")
    os.makedirs(runs, exist_ok=True)
    rng = random.Random(seed)
    base = template()
    paths = []
    for i in range(start, start + n):
        rid = run_id(i, seed)
        path = os.path.join(runs, f"{rid}.json")
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(make_doc(i, rng, base, rid)))
        if logged:
            note_change(folder, "r", rid)
        paths.append(path)
    return paths


def store_folder(root: str) -> tuple[FileStore, str]:
    """The FileStore of the benchmark's experiment under ``root`` and its folder
    (made, with the experiment's ``_meta.json``, if missing)."""
    fs = FileStore(FileStoreConfig(root=root, experiment_id=EXP))
    folder = fs.get_working_directory()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "_meta.json"), "wb") as fh:
        fh.write(orjson.dumps({"format": "metalab-filestore", "layout_version": 1,
                               "experiment_id": EXP}))
    return fs, folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "query.json"))
    ap.add_argument("--dir", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="keep the run files already in --dir (skip generating them)")
    ap.add_argument("--refresh-only", action="store_true",
                    help="reuse the store in --dir (from an earlier run): only measure (b)")
    args = ap.parse_args()
    if args.refresh_only:
        refresh_only(args)
        return
    log("machine", machine())
    log("runs", args.runs)
    tmp = args.dir or tempfile.mkdtemp(prefix="mlbench-query-")
    os.chmod(tmp, 0o755)  # the PostgreSQL server user must reach its data folder
    fs, folder = store_folder(os.path.join(tmp, "store"))
    existing = os.path.join(folder, "runs")
    if args.reuse and os.path.isdir(existing) and len(os.listdir(existing)) >= args.runs:
        log("reused_run_files", len(os.listdir(existing)))
        # the files of an earlier run may have left the page cache: one scan
        # first (not timed), so the scan below reads them from memory as after
        # generating them
        t0 = time.perf_counter()
        Store.query_runs(fs, where=WHERE, columns=COLUMNS)
        log("warm_up_scan_s", round(time.perf_counter() - t0, 1))
    else:
        t0 = time.perf_counter()
        write_runs(folder, 0, args.runs, 1)
        log("generate_s", round(time.perf_counter() - t0, 1))

    # (a) full scan of the files (the in-memory engine over iter_run_documents)
    t0 = time.perf_counter()
    scan = Store.query_runs(fs, where=WHERE, columns=COLUMNS)
    scan_s = time.perf_counter() - t0
    log("scan_query_s", round(scan_s, 3))
    log("selected_runs", len(scan))

    t0 = time.perf_counter()
    fs.reindex_catalog()
    log("catalog_build_s", round(time.perf_counter() - t0, 1))
    cat_rows = fs.query_runs(where=WHERE, columns=COLUMNS)
    assert cat_rows == scan, "catalog and scan disagree"
    cat_s = best_of(lambda: fs.query_runs(where=WHERE, columns=COLUMNS), repeat=3)
    log("catalog_query_s", round(cat_s, 4))
    log("catalog_speedup_x", round(scan_s / cat_s, 1))
    catalog = Catalog(folder)
    log("catalog_refresh_nochange_s", round(best_of(catalog.refresh, repeat=3), 4))
    log("catalog_size_mb", round(os.path.getsize(catalog.path) / 2**20, 1))

    # PostgreSQL
    from metalab.services import start_server, stop_server
    from metalab.store import PostgresStore

    pg_dir = os.path.join(tmp, "pg")
    info = start_server(pg_dir, fast=True)
    try:
        t0 = time.perf_counter()
        pg = PostgresStore.from_filestore(info.url, fs, rebuild=True)
        log("pg_rebuild_index_s", round(time.perf_counter() - t0, 1))
        import psycopg

        with psycopg.connect(info.url) as conn:
            for table in ("runs", "run_records"):
                size = conn.execute("SELECT pg_relation_size(%s)", (table,)).fetchone()
                log(f"pg_{table}_table_mb", round((size[0] if size else 0) / 2**20, 1))
        pg_rows = pg.query_runs(where=WHERE, columns=COLUMNS)
        log("pg_selected_runs", len(pg_rows))
        pg_s = best_of(lambda: pg.query_runs(where=WHERE, columns=COLUMNS), repeat=3)
        log("pg_query_s", round(pg_s, 4))
        log("pg_speedup_x", round(scan_s / pg_s, 1))
        # the same server restarted with shared_buffers at a quarter of the memory
        # (the usual setting; the default 128MB makes every scan of the 0.8 GB
        # runs table read it through the OS page cache); the rest runs on it
        pg.close()
        stop_server(pg_dir, mode="fast")
        buffers = f"{int(machine()['mem_gib'] * 1024 / 4)}MB"
        info = start_server(pg_dir, fast=True, settings={"shared_buffers": buffers})
        log("pg_tuned_shared_buffers", buffers)
        pg = PostgresStore.from_filestore(info.url, fs)
        assert pg.query_runs(where=WHERE, columns=COLUMNS) == pg_rows  # (and loads the buffers)
        pg_tuned_s = best_of(lambda: pg.query_runs(where=WHERE, columns=COLUMNS), repeat=3)
        log("pg_tuned_query_s", round(pg_tuned_s, 4))
        log("pg_tuned_speedup_x", round(scan_s / pg_tuned_s, 1))
        # the same query once the two filtered fields have expression indexes
        t0 = time.perf_counter()
        pg.create_field_index("params.p0", "params.p1")
        log("pg_field_index_create_s", round(time.perf_counter() - t0, 2))
        assert pg.query_runs(where=WHERE, columns=COLUMNS) == pg_rows
        pg_idx_s = best_of(lambda: pg.query_runs(where=WHERE, columns=COLUMNS), repeat=3)
        log("pg_indexed_query_s", round(pg_idx_s, 4))
        log("pg_indexed_speedup_x", round(scan_s / pg_idx_s, 1))

        # (c) to_dataframe of ~100k runs x 30 columns
        for name, store in (("catalog", fs), ("pg", pg)):
            def frame(store: Store = store) -> None:
                df = load_results(store, where=WIDE_WHERE, columns=WIDE_COLUMNS).to_dataframe()
                out.setdefault("df_shape", list(df.shape))

            log(f"df_{name}_s", round(best_of(frame, repeat=2), 3))
        log("df_shape", out.get("df_shape"))

        def frame_docs() -> None:
            load_results(fs, where=WIDE_WHERE).to_dataframe()

        log("df_catalog_whole_documents_s", round(best_of(frame_docs, repeat=1), 3))
        pg.close()
    finally:
        stop_server(pg_dir, mode="fast", remove=True)

    # (b) incremental refresh after new runs (last: it adds runs to the store,
    # and the queries above compare the same runs in every engine)
    measure_refresh(folder, catalog, args.new)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)


def read_files(paths: list[str]) -> None:
    """The baseline of a refresh: read and parse each file."""
    for p in paths:
        with open(p, "rb") as fh:
            orjson.loads(fh.read())


def read_files_os(paths: list[str]) -> None:
    """The same with the os-level calls the catalog uses (no file object per
    file): a stricter baseline, logged beside the first."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            orjson.loads(os.read(fd, os.fstat(fd).st_size + 1))
        finally:
            os.close(fd)


def measure_refresh(folder: str, catalog: Catalog, new: int, cycles: int = 2) -> None:
    """(b): refresh after ``new`` logged runs, round after round, and the
    full-listing fallback.

    Each round adds ``new`` runs (random ids, change-log lines as the FileStore
    writes them), refreshes, and reads and parses the same files (the
    baseline, measured in the same round; every other round before the
    refresh, so neither is always the first reader).  Refreshes append rows
    to the catalog; every ``merge_at`` appended rows are merged, which makes
    that round slower.  The rounds cover ``cycles`` whole merge
    cycles, so the mean over them is the amortized cost, merges included.
    """
    catalog.refresh()
    state = catalog.delta_state()
    log("catalog_delta_state", state)
    per_cycle = -(-(state["merge_at"] - state["delta_rows"]) // new)
    rounds = max(3, cycles * -(-state["merge_at"] // new))
    seed = 1000
    times: list[float] = []
    bases: list[float] = []
    os_bases: list[float] = []
    merges = 0
    from metalab.query import build_query
    from metalab.query._liveness import lost_cutoff

    selective = build_query(WHERE, columns=COLUMNS)
    pending_query: dict[int, float] = {}  # rows waiting for a merge -> query time

    def query_now() -> None:
        """The selective query through the catalog as it is (no refresh due):
        once right after a merge, once with the most rows a query meets
        waiting for one."""
        waiting = catalog.delta_state()["delta_rows"]
        pending_query[waiting] = best_of(
            lambda: catalog.query(selective, lost_cutoff()), repeat=3)

    def baselines(paths: list[str]) -> None:
        t0 = time.perf_counter()
        read_files(paths)
        bases.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        read_files_os(paths)
        os_bases.append(time.perf_counter() - t0)

    for rnd in range(rounds):
        state = catalog.delta_state()
        if len(pending_query) < 2 and (
                state["delta_rows"] + new >= state["merge_at"] or not state["delta_rows"]):
            query_now()  # (the next refresh merges, or the last one did)
        paths = write_runs(folder, 0, new, seed + rnd, logged=True)
        # the first to read a file just written pays about 1 ms more per 1,000
        # (measured): the refresh and the baselines take turns at going first
        if rnd % 2:
            baselines(paths)
        before = catalog.delta_state()["delta_rows"]
        t0 = time.perf_counter()
        reads = catalog.refresh()
        times.append(time.perf_counter() - t0)
        assert not catalog.last_full, catalog.last_reason
        assert reads == new, reads
        merges += catalog.delta_state()["delta_rows"] < before + new
        if not rnd % 2:
            baselines(paths)
    base_s = statistics.median(bases)
    log("refresh_rounds", rounds)
    log("refresh_first_merge_after_rounds", per_cycle)
    log("refresh_merges", merges)
    log("refresh_files_read", reads)
    log("read_new_files_median_s", round(base_s, 4))
    log("refresh_median_s", round(statistics.median(times), 4))
    log("refresh_mean_s", round(statistics.mean(times), 4))
    log("refresh_max_s", round(max(times), 4))
    log("refresh_vs_read_median_x", round(statistics.median(times) / base_s, 2))
    log("refresh_vs_read_amortized_x", round(statistics.mean(times) / base_s, 2))
    os_s = statistics.median(os_bases)
    log("read_new_files_os_median_s", round(os_s, 4))
    log("refresh_vs_os_read_median_x", round(statistics.median(times) / os_s, 2))
    log("refresh_vs_os_read_amortized_x", round(statistics.mean(times) / os_s, 2))
    log("catalog_query_s_by_rows_waiting_for_a_merge",
        {k: round(v, 4) for k, v in sorted(pending_query.items())})

    def read_new() -> None:
        read_files(paths)

    # the fallback: runs copied in without log lines make the refresh list the folder
    time.sleep(0.05)  # a later timestamp tick than the last logged write
    paths = write_runs(folder, 0, new, 9, logged=False)  # (seed 9: new ids)
    t0 = time.perf_counter()
    reads = catalog.refresh()
    full_s = time.perf_counter() - t0
    assert catalog.last_full, "the unlogged runs did not cause a full listing"
    log("full_listing_files_read", reads)
    log("refresh_full_listing_s", round(full_s, 4))
    log("full_listing_vs_read_x", round(full_s / best_of(read_new, repeat=3), 1))

    def list_and_read() -> None:
        os.listdir(os.path.join(folder, "runs"))
        read_new()

    list_read_s = best_of(list_and_read, repeat=3)
    log("list_dir_and_read_new_s", round(list_read_s, 4))
    log("full_listing_vs_list_and_read_x", round(full_s / list_read_s, 2))


def refresh_only(args: argparse.Namespace) -> None:
    """(b) again on an existing store: catalog current, then ``--new`` runs are added."""
    log("machine", machine())
    folder = FileStore(FileStoreConfig(root=os.path.join(args.dir, "store"),
                                       experiment_id=EXP)).get_working_directory()
    log("runs", len(os.listdir(os.path.join(folder, "runs"))))
    measure_refresh(folder, Catalog(folder), args.new)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
