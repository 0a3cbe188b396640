"""PostgresStore benchmarks, each against its baseline measured in the same run.

Starts its own throwaway PostgreSQL server with ``metalab.services`` (durable
settings: fsync and synchronous_commit on) in a temp folder and stops it at
the end.

(a) ``rebuild_index()`` of N runs from the files against the raw baseline:
    reading + parsing the same N files with orjson plus a binary COPY of the
    same rows into a plain table.  Target: >= 0.7x the baseline's throughput.
(b) per-run write cost, ``put_run_record`` on a PostgresStore in ``sync``
    index mode against a FileStore alone (same records, interleaved rounds).
    Target: the index adds < 30 %.  Reported as the caller sees it, and with
    the final flush of the queued index changes included.
(c) ``load_results`` of one experiment's N runs from the index against the
    same call on a FileStore (scan of the run files): (1) the call alone,
    (2) with ``.to_dataframe()``, (3) with ``run.record`` of every run (the
    index defers the verbatim records until a run's record is needed), (4) a
    filtered, projected load to a DataFrame; warm page cache, and with the OS
    page cache dropped when run as root.  Target: the index is >= 5x faster
    on (1) and (2).  (1) and (2) from the index are measured twice: as a
    repeat load (the server hands back the kept answer of
    ``run_table_cache``: a cache hit) and as the first load after the cache
    row was deleted by hand (a miss: the column queries run and their
    answer is written to the cache), keys ``index_<name>_s`` and
    ``index_<name>_miss_s``; (1) also with the cache switched off (neither
    read nor written, the path before the cache), ``index_load_nocache_s``:
    the cost of the first load after a write while a sweep still writes
    (an answer is kept only for an experiment quiet for ``CACHE_QUIET_S``).

Usage: python bench/bench_postgres.py [--runs 100000] [--writes 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import drop_caches, machine
from bench_filestore import EXP, make_record

from metalab import load_results
from metalab.analysis import Results
from metalab.services import start_server, stop_server
from metalab.store import FileStoreConfig, PostgresStoreConfig
from metalab.store._index._rows import ROW_COLUMNS as _ROW_COLUMNS
from metalab.store._index._rows import ROW_TYPES as _ROW_TYPES
from metalab.store._index._rows import run_row


def _config(url: str, root: Path, schema: str) -> PostgresStoreConfig:
    return PostgresStoreConfig(
        connection_string=url, file_root=str(root), schema=schema, experiment_id=EXP
    )


# ----------------------------------------------------------------------- (a)
def fill_files(root: Path, n: int) -> Path:
    store = FileStoreConfig(root=root, experiment_id=EXP).connect()
    rng = random.Random(1)
    t0 = time.perf_counter()
    for i in range(n):
        store.put_run_record(make_record(i, rng))
    print(f"    filled {n} run files in {time.perf_counter() - t0:.1f} s")
    return Path(store.get_working_directory()) / "runs"


def bench_rebuild(url: str, root: Path, runs_dir: Path, n: int) -> dict[str, float]:
    import psycopg

    def raw(table: str) -> float:
        t0 = time.perf_counter()
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cols = ", ".join(f"{c} {t}" for c, t in zip(_ROW_COLUMNS, _ROW_TYPES, strict=True))
            cur.execute(f"CREATE TABLE {table} ({cols})")
            with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(list(_ROW_TYPES))
                with os.scandir(runs_dir) as it:
                    for entry in it:
                        if not entry.name.endswith(".json") or entry.name.startswith("."):
                            continue
                        with open(entry.path, "rb") as fh:
                            doc = orjson.loads(fh.read())
                        cp.write_row(run_row(EXP, doc))
            conn.commit()
        return time.perf_counter() - t0

    def ours(schema: str) -> float:
        store = _config(url, root, schema).connect()
        try:
            t0 = time.perf_counter()
            count = store.rebuild_index()
            elapsed = time.perf_counter() - t0
        finally:
            store.close()
        if count != n:
            raise SystemExit(f"rebuild indexed {count} runs, expected {n}")
        return elapsed

    t_raw, t_ours = [], []
    for i in range(2):  # interleaved; each rebuild into an empty schema
        t_raw.append(raw(f"raw_copy_{i}"))
        t_ours.append(ours(f"rebuild_{i}"))
    raw_rate, our_rate = n / min(t_raw), n / min(t_ours)
    return {"n": n, "raw_s": min(t_raw), "rebuild_s": min(t_ours), "raw_per_s": raw_rate,
            "rebuild_per_s": our_rate, "ratio": our_rate / raw_rate}


# ----------------------------------------------------------------------- (b)
def bench_writes(url: str, tmp: Path, n: int, rounds: int) -> dict[str, float]:
    """Alternate FileStore / PostgresStore rounds of ``n`` writes; each pair
    gives a ratio (so both sides of a pair share the machine's load at that
    moment); the median ratio over the pairs is reported."""
    import statistics

    rng = random.Random(0)
    records = [make_record(i, rng) for i in range(n)]
    warm = _config(url, tmp / "w-warm", "writes_warm").connect()
    for rec in records[:200]:  # imports, first connection, first thread start
        warm.put_run_record(rec)
    warm.close()
    t_file, t_pg, t_pg_flushed, cpu_file, cpu_pg = [], [], [], [], []
    for r in range(rounds):
        os.sync()
        fs = FileStoreConfig(root=tmp / f"w-fs-{r}", experiment_id=EXP).connect()
        c0, t0 = time.process_time(), time.perf_counter()
        for rec in records:
            fs.put_run_record(rec)
        t_file.append(time.perf_counter() - t0)
        cpu_file.append(time.process_time() - c0)

        os.sync()
        pg = _config(url, tmp / f"w-pg-{r}", f"writes_{r}").connect()
        pg.index.ping()  # connect and create the tables outside the timing
        c0, t0 = time.process_time(), time.perf_counter()
        for rec in records:
            pg.put_run_record(rec)
        t_pg.append(time.perf_counter() - t0)
        pg.flush()
        t_pg_flushed.append(time.perf_counter() - t0)
        cpu_pg.append(time.process_time() - c0)
        if pg.index_is_behind() or pg.index.count_runs(EXP) != n:
            raise SystemExit("the index did not receive every write")
        pg.close()
    ratios = [p / f for p, f in zip(t_pg, t_file, strict=True)]
    ratios_flushed = [p / f for p, f in zip(t_pg_flushed, t_file, strict=True)]
    return {"n": n, "rounds": rounds,
            "filestore_ms": statistics.median(t_file) / n * 1e3,
            "postgres_ms": statistics.median(t_pg) / n * 1e3,
            "postgres_flushed_ms": statistics.median(t_pg_flushed) / n * 1e3,
            "filestore_cpu_ms": statistics.median(cpu_file) / n * 1e3,
            "postgres_cpu_ms": statistics.median(cpu_pg) / n * 1e3,
            "overhead": statistics.median(ratios) - 1,
            "overhead_flushed": statistics.median(ratios_flushed) - 1,
            "overhead_best_pair": min(ratios) - 1}


# ----------------------------------------------------------------------- (c)
#: a filter matching about 10 % of the runs, and every field of the runs
QUERY_WHERE = "metrics.accuracy < 0.1"
QUERY_COLUMNS = ["params.lr", "params.width", "params.optimizer", "params.depth",
                 "metrics.loss", "metrics.accuracy", "metrics.epochs", "duration_ms"]


def bench_load(url: str, root: Path, n: int, rounds: int = 3) -> dict[str, float]:
    """For both stores in the same run, each timed on its own:

    (1) ``load_results(store)`` alone; (2) ``load_results(store).to_dataframe()``;
    (3) ``load_results(store)`` then ``run.record`` of every run (the index
    path defers the verbatim records: this shows what reading them costs);
    (4) ``load_results(store, where=~10 %, columns=all fields).to_dataframe()``.
    Rounds alternate the stores; the best round of each is reported.
    """
    import pandas as pd

    pg = _config(url, root, "rebuild_0").connect()
    if pg.index_is_behind() or pg.count_runs() != n:
        raise SystemExit("the index of the load benchmark is not current")
    stores = {"files": FileStoreConfig(root=root, experiment_id=EXP), "index": pg}

    def load(store: object) -> object:
        res = load_results(store)  # type: ignore[arg-type]
        if len(res) != n:
            raise SystemExit(f"load gave {len(res)} runs, expected {n}")
        return res

    measures = {
        "load": lambda s: load(s),
        "dataframe": lambda s: load(s).to_dataframe(),  # type: ignore[attr-defined]
        "records": lambda s: [r.record for r in load(s)],  # type: ignore[attr-defined]
        "query": lambda s: load_results(s, where=QUERY_WHERE,
                                        columns=QUERY_COLUMNS).to_dataframe(),
    }

    def timed(fn: object, store: object) -> float:
        t0 = time.perf_counter()
        fn(store)  # type: ignore[operator]
        return time.perf_counter() - t0

    # same answers from both stores (and warm-up: imports, page cache, catalogs)
    frames = {k: load_results(s).to_dataframe() for k, s in stores.items()}  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(frames["files"], frames["index"])
    queried = {k: measures["query"](s) for k, s in stores.items()}
    pd.testing.assert_frame_equal(queried["files"], queried["index"], check_like=True)
    out: dict[str, float] = {"n": n, "query_rows": len(queried["files"])}
    times: dict[str, list[float]] = {}

    def forget() -> None:  # a cache miss next: the kept answer is deleted
        with pg.index.connection() as conn:
            conn.execute(pg.index._q("DELETE FROM {s}.run_table_cache"))

    def source(expected: str) -> None:
        if pg.index.last_table_source != expected:
            raise SystemExit(f"the index load was answered by {pg.index.last_table_source}, "
                             f"expected {expected}")

    def no_cache(store: object) -> object:  # the cache neither read nor written
        cache = pg.index.table_cache
        cache.lookup = lambda *a: (None, None, False)  # type: ignore[method-assign]
        try:
            return load(store)
        finally:
            del cache.lookup

    for _ in range(rounds):
        times.setdefault("index_load_nocache_s", []).append(timed(no_cache, pg))
        source("query")
        for name, fn in measures.items():
            for key, store in stores.items():
                if key == "index" and name in ("load", "dataframe"):
                    forget()
                    times.setdefault(f"index_{name}_miss_s", []).append(timed(fn, store))
                    source("query")
                times.setdefault(f"{key}_{name}_s", []).append(timed(fn, store))
                if key == "index" and name in ("load", "dataframe"):
                    source("cache")
        # the previous index path, for comparison: every record document parsed
        times.setdefault("index_documents_s", []).append(timed(
            lambda s: Results._build(s, s.iter_run_documents(), [], print), pg))
    out.update({k: min(v) for k, v in times.items()})
    for name in measures:
        out[f"{name}_speedup"] = out[f"files_{name}_s"] / out[f"index_{name}_s"]
    for name in ("load", "dataframe"):
        out[f"{name}_miss_speedup"] = out[f"files_{name}_s"] / out[f"index_{name}_miss_s"]
    out["load_nocache_speedup"] = out["files_load_s"] / out["index_load_nocache_s"]
    # cold: the OS page cache dropped before each load (root only); the
    # server keeps its own shared_buffers, as a running database does
    if drop_caches():
        cold: dict[str, list[float]] = {}
        for _ in range(2):
            for name in ("load", "dataframe", "records"):
                for key, store in stores.items():
                    drop_caches()
                    cold.setdefault(f"cold_{key}_{name}_s", []).append(
                        timed(measures[name], store))
        out.update({k: min(v) for k, v in cold.items()})
        for name in ("load", "dataframe", "records"):
            out[f"cold_{name}_speedup"] = out[f"cold_files_{name}_s"] / out[f"cold_index_{name}_s"]
    pg.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000, help="runs for (a) and (c)")
    ap.add_argument("--writes", type=int, default=1000, help="writes per round for (b)")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds for (b)")
    ap.add_argument("--only", choices=["a", "b", "c"], action="append",
                    help="run only these parts (c needs a)")
    ap.add_argument("--no-fsync-server", action="store_true",
                    help="run the server with fsync off (shows what the server's own disk "
                    "writes cost when it shares the disk with the files)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure")
    args = ap.parse_args()
    parts = set(args.only or ["a", "b", "c"])
    if "c" in parts:
        parts.add("a")
    tmp = Path(tempfile.mkdtemp(prefix="metalab-pgbench-", dir=args.dir))
    server_dir = Path(tempfile.mkdtemp(prefix="metalab-pgbench-server-"))
    info = start_server(server_dir, dbname=f"bench_{secrets.token_hex(3)}",
                        fast=args.no_fsync_server)
    result: dict[str, object] = {"machine": machine(),
                                 "date": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        print("server:", info.url,
              "(fsync off)" if args.no_fsync_server else "(durable settings)")
        result["server_fsync"] = not args.no_fsync_server
        if "b" in parts:
            w = bench_writes(info.url, tmp, args.writes, args.rounds)
            result["writes"] = w
            print(f"(b) per-run write cost, n={w['n']} x {w['rounds']} interleaved rounds "
                  "(medians; overhead = median of the per-pair ratios)")
            print(f"    FileStore alone          : {w['filestore_ms']:.3f} ms/run  "
                  f"(CPU of this process {w['filestore_cpu_ms']:.3f} ms/run)")
            print(f"    PostgresStore (sync)     : {w['postgres_ms']:.3f} ms/run   "
                  f"index adds {w['overhead'] * 100:+.0f} % (target < 30 %; best pair "
                  f"{w['overhead_best_pair'] * 100:+.0f} %)")
            print(f"    ... incl. final flush    : {w['postgres_flushed_ms']:.3f} ms/run   "
                  f"index adds {w['overhead_flushed'] * 100:+.0f} %  "
                  f"(CPU of this process {w['postgres_cpu_ms']:.3f} ms/run)")
        if "a" in parts:
            root = tmp / "files"
            runs_dir = fill_files(root, args.runs)
            a = bench_rebuild(info.url, root, runs_dir, args.runs)
            result["rebuild"] = a
            print(f"(a) rebuild_index of n={a['n']} runs from the files")
            print(f"    raw read+parse+COPY      : {a['raw_s']:8.2f} s  {a['raw_per_s']:10.0f} runs/s")
            print(f"    rebuild_index()          : {a['rebuild_s']:8.2f} s  "
                  f"{a['rebuild_per_s']:10.0f} runs/s   ratio {a['ratio']:.2f}x (target >= 0.7x)")
            if "c" in parts:
                c = bench_load(info.url, root, args.runs)
                result["load"] = c
                print(f"(c) load_results of one experiment, n={c['n']} (warm page cache, "
                      "best of 3 alternating rounds; target >= 5x on (1) and (2))")
                labels = {"load": "(1) load_results", "dataframe": "(2) ... .to_dataframe()",
                          "records": "(3) ... + every run.record",
                          "query": f"(4) where+columns ({int(c['query_rows'])} rows) .to_dataframe()"}
                print(f"    (1') index, whole record documents (the previous path): "
                      f"{c['index_documents_s']:.3f} s")
                print(f"    (1'') index, columns without the run table cache: "
                      f"{c['index_load_nocache_s']:.3f} s   {c['load_nocache_speedup']:.1f}x")
                for prefix, title in (("", "warm"), ("cold_", "OS page cache dropped")):
                    if f"{prefix}load_speedup" not in c:
                        continue
                    print(f"    {title}:")
                    for name, label in labels.items():
                        if f"{prefix}{name}_speedup" not in c:
                            continue
                        print(f"    {label:44s} files {c[f'{prefix}files_{name}_s']:7.3f} s   "
                              f"index {c[f'{prefix}index_{name}_s']:7.3f} s   "
                              f"{c[f'{prefix}{name}_speedup']:5.1f}x"
                              + ("   (repeat load: cache hit)"
                                 if f"{prefix}index_{name}_miss_s" in c else ""))
                        if f"{prefix}index_{name}_miss_s" in c:
                            print(f"    {'    first load after a change (cache miss)':44s} "
                                  f"{'':13s}   index {c[f'{prefix}index_{name}_miss_s']:7.3f} s   "
                                  f"{c[f'{prefix}{name}_miss_speedup']:5.1f}x")
        print("machine:", json.dumps(result["machine"]))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        stop_server(server_dir, mode="fast", remove=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
