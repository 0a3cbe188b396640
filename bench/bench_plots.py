"""Chart benchmark: a grouped-over-seeds plot of a whole experiment, all figures in one run.

The store is the one of ``bench_query.py`` (``write_runs``: 20 params, 10
metrics per run).  The chart is the UI's plot of the whole experiment:
``line`` of ``metrics.m0`` against ``params.p1`` (100 values), one colour per
``params.p3`` (a boolean), mean over the replicates of each point (about
5,000 runs each at 10^6 runs) with a t-based 95% band.  Measured, each the
best of a few repeats:

* ``query``: the query engine alone for the same columns
  (``store.query_runs(columns=spec.fields())``), the floor the chart builds on;
* ``load``: ``load_results(store, columns=spec.fields())``;
* ``figure``: ``plot_figure(results, spec)`` on the loaded runs (the math);
* ``chart``: both, what the UI server does per plot request (target < 2 s
  at 10^6 runs);
* a raw scatter of the same fields (a fixed sample of 5,000 runs, WebGL);
* ``pushed_chart``: the same chart computed in the index (aggregation
  pushdown, ``Store.aggregate_runs``: only the 200 groups leave SQL), and
  whether its figure equals the loaded one (floats within 1e-9);
  ``query_figure``: what the UI's plot endpoint calls (the pushdown, else a load).

Stores: the FileStore catalog, then (``--pg``) PostgreSQL filled with
``rebuild_index`` from the same files (a throwaway server).

``--kind hist`` (histograms of ``metrics.m0``, alone and per ``params.p3``)
or ``--kind raw`` (the raw scatter): only those charts, from the loaded runs
against computed in the index, and whether the figures are equal.

Usage: python bench/bench_plots.py [--runs 1000000] [--dir D [--reuse]] [--pg] [--repeat 3]
       [--pushed-only | --kind hist|raw]
       [--json bench/out/plots.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import best_of, machine
from bench_query import store_folder, write_runs

from metalab import load_results
from metalab.analysis import PlotSpec, plot_figure
from metalab.analysis._plots_pushdown import pushed_figure, query_figure
from metalab.store import FileStore
from metalab.store._base import Store

SPEC = PlotSpec("line", "params.p1", "metrics.m0", group="params.p3")
RAW = PlotSpec("scatter", "params.p0", "metrics.m0", group="params.p3", over_seeds=False)

out: dict[str, Any] = {}
T = TypeVar("T")


def log(key: str, value: Any) -> None:
    out[key] = value
    print(f"{key}: {value}", flush=True)


def measure_pushed(name: str, store: Store, repeat: int) -> None:
    """The chart computed in the index (see the module docstring), and whether it
    equals the chart of the loaded runs (loaded once, untimed)."""
    holder: dict[str, Any] = {}

    def pushed() -> None:
        holder["pushed"] = pushed_figure(store, None, None, SPEC)

    log(f"{name}_pushed_chart_s", round(best_of(pushed, repeat), 3))
    log(f"{name}_pushed_groups_points", holder["pushed"]["layout"]["meta"]["metalab"]["points"])
    log(f"{name}_query_figure_s", round(best_of(lambda: query_figure(store, SPEC), repeat), 3))
    loaded = plot_figure(load_results(store, columns=SPEC.fields()), SPEC)
    log(f"{name}_pushed_same_figure", _same(holder["pushed"], loaded))


def measure(name: str, store: Store, repeat: int) -> None:
    """The four timings of one store (see the module docstring)."""
    fields = SPEC.fields()
    log(f"{name}_query_s", round(best_of(lambda: store.query_runs(columns=fields), repeat), 3))
    holder: dict[str, Any] = {}

    def load() -> None:
        holder["results"] = load_results(store, columns=fields)

    log(f"{name}_load_s", round(best_of(load, repeat), 3))
    results = holder["results"]
    log(f"{name}_columnar", results._cols is not None)

    def figure() -> None:
        holder["figure"] = plot_figure(results, SPEC)

    log(f"{name}_figure_s", round(best_of(figure, repeat), 3))
    meta = holder["figure"]["layout"]["meta"]["metalab"]
    log(f"{name}_figure_points", meta["points"])
    log(f"{name}_figure_runs", meta["runs"])
    log(f"{name}_figure_json_kb", len(orjson.dumps(holder["figure"])) // 1024)

    def chart() -> None:
        plot_figure(load_results(store, columns=fields), SPEC)

    log(f"{name}_chart_s", round(best_of(chart, repeat), 3))
    measure_pushed(name, store, repeat)
    raw_fields = RAW.fields()

    def raw_chart() -> None:
        holder["raw"] = plot_figure(load_results(store, columns=raw_fields), RAW)

    log(f"{name}_raw_scatter_chart_s", round(best_of(raw_chart, repeat), 3))
    log(f"{name}_raw_scatter_points", holder["raw"]["layout"]["meta"]["metalab"]["points"])


#: the charts of ``--kind``: what is measured loaded (load + figure) against pushed
KINDS = {
    "hist": [PlotSpec("histogram", "metrics.m0"),
             PlotSpec("histogram", "metrics.m0", group="params.p3", bins=100)],
    "raw": [RAW],
}


def measure_kind(name: str, store: Store, kind: str, repeat: int) -> None:
    """Per chart of ``KINDS[kind]``: the chart from the loaded runs, the chart from
    the index (:func:`pushed_figure`, None if it cannot) and whether they are equal
    (histograms: exactly; a raw scatter's sample may differ, its points count)."""
    holder: dict[str, Any] = {}
    for i, spec in enumerate(KINDS[kind]):
        key = f"{name}_{kind}{i}"
        log(f"{key}_spec", spec.to_query())

        def loaded(spec: PlotSpec = spec) -> None:
            holder["loaded"] = plot_figure(load_results(store, columns=spec.fields()), spec)

        def pushed(spec: PlotSpec = spec) -> None:
            holder["pushed"] = pushed_figure(store, None, None, spec)

        log(f"{key}_loaded_chart_s", round(best_of(loaded, repeat), 3))
        log(f"{key}_pushed_chart_s", round(best_of(pushed, repeat), 3))
        got = holder["pushed"]
        if got is None:
            log(f"{key}_pushed", None)
            continue
        meta = got["layout"]["meta"]["metalab"]
        log(f"{key}_pushed_points", meta["points"])
        log(f"{key}_pushed_notes", meta["notes"])
        log(f"{key}_pushed_json_kb", len(orjson.dumps(got)) // 1024)
        if spec.kind == "histogram":
            log(f"{key}_same_figure", got == holder["loaded"])
        else:  # (another sample of the runs: the same counts, notes and axes)
            log(f"{key}_same_layout", got["layout"] == holder["loaded"]["layout"])


def _same(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Whether two figures are equal, floats within ``rel`` (sums in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rel) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def timed(key: str, fn: Callable[[], T]) -> T:
    """``fn()``, its wall time logged under ``key``."""
    t0 = time.perf_counter()
    value = fn()
    log(key, round(time.perf_counter() - t0, 1))
    return value


def make_store(root: str, runs: int, reuse: bool) -> FileStore:
    fs, folder = store_folder(root)
    existing = os.path.join(folder, "runs")
    if reuse and os.path.isdir(existing) and len(os.listdir(existing)) >= runs:
        log("reused_run_files", len(os.listdir(existing)))
        # an earlier run's catalog is brought up to date by the first query (untimed)
        timed("catalog_refresh_s", lambda: fs.query_runs(limit=1))
    else:
        timed("generate_s", lambda: write_runs(folder, 0, runs, 1))
        timed("catalog_build_s", fs.reindex_catalog)
    return fs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the run files already in --dir")
    ap.add_argument("--pg", action="store_true", help="also measure PostgreSQL")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--pushed-only", action="store_true",
                    help="measure only the chart computed in the index (and check it)")
    ap.add_argument("--kind", choices=sorted(KINDS), default=None,
                    help="measure only these charts, loaded against computed in the index")
    ap.add_argument("--json", default=str(Path(__file__).parent / "out" / "plots.json"))
    args = ap.parse_args()
    log("machine", machine())
    log("runs", args.runs)
    log("spec", SPEC.to_query())
    tmp = args.dir or tempfile.mkdtemp(prefix="mlbench-plots-")
    os.chmod(tmp, 0o755)  # the PostgreSQL server user must reach its data folder
    fs = make_store(os.path.join(tmp, "store"), args.runs, args.reuse)
    run = measure_pushed if args.pushed_only else measure
    if args.kind is not None:
        def run(name: str, store: Store, repeat: int) -> None:
            measure_kind(name, store, args.kind, repeat)
    run("catalog", fs, args.repeat)
    if args.pg:
        from metalab.services import start_server, stop_server
        from metalab.store import PostgresStore

        pg_dir = os.path.join(tmp, "pg")
        url = start_server(pg_dir, fast=True).url
        try:
            pg = timed("pg_rebuild_index_s",
                       lambda: PostgresStore.from_filestore(url, fs, rebuild=True))
            run("pg", pg, args.repeat)
            pg.close()
        finally:
            stop_server(pg_dir, mode="fast", remove=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    if args.dir is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
