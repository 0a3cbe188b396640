"""Runs and comparisons shared by the aggregation pushdown tests (FileStore and PostgreSQL).

:func:`fill` writes a sweep whose values exercise every rule of the charts:
inf, NaN and missing metrics, a metric that is sometimes a text, boolean,
list and missing params, a param of mixed kinds, a running run whose
heartbeat stopped (shown as lost), and a param whose name is an SQL
injection attempt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from metalab.analysis import PlotSpec
from metalab.model import Status
from metalab.store import Store
from metalab.testing import make_record

EVIL = 'x"; drop table runs; --'
T0 = datetime(2026, 1, 1, tzinfo=UTC)

SPECS = [
    PlotSpec("line", "params.lr", "metrics.loss", "params.opt"),
    PlotSpec("line", "params.lr", "metrics.loss", "params.flag", band="std"),
    PlotSpec("scatter", "params.opt", "metrics.loss", "params.layers", band="sem"),
    PlotSpec("bar", "params.opt", "metrics.loss", "params.flag"),
    PlotSpec("bar", "params.mixed", "metrics.loss", band=None),
    PlotSpec("bar", "params.layers"),
    PlotSpec("line", "params.mixed", "metrics.acc", "status"),
    PlotSpec("line", f"params.{EVIL}", "metrics.loss", f"params.{EVIL}"),
    PlotSpec("line", "params.lr", "metrics.word", band="ci95"),
]
WHERES = [None, "params.lr > 0.005", "params.opt = 'a' or metrics.loss > 0.5",
          'params."' + EVIL.replace('"', '\\"') + '" != 3']


def fill(store: Store, experiment_id: str, n: int = 240, seed: int = 1) -> None:
    """``n`` runs of ``experiment_id`` (see the module docstring), ids ``r0000`` ...
    (another ``seed``: ``s<seed>-0000`` ...)."""
    rng = random.Random(seed)
    for i in range(n):
        loss: Any = 0.1 * (i % 5) + rng.random()
        if i % 17 == 0:
            loss = math.inf
        elif i % 19 == 0:
            loss = -math.inf
        elif i % 23 == 0:
            loss = math.nan
        metrics: dict[str, Any] = {"acc": rng.random(), "word": "high" if i % 3 else 0.5}
        if i % 13:
            metrics["loss"] = loss
        params: dict[str, Any] = {
            "lr": [0.1, 0.01, 0.001][i % 3], "opt": ["a", "b", None][i % 3],
            "flag": i % 2 == 0, "layers": [[1, 2], [3], {"k": 1}][i % 3],
            "mixed": [1, "one", True, 2.5, None, "NaN"][i % 6], EVIL: i % 4,
        }
        if i % 31 == 0:
            del params["lr"]
        status, beat = Status.SUCCESS, None
        if i == 5:  # running, its heartbeat long stopped: readers see it lost
            status, beat = Status.RUNNING, T0
        store.put_run_record(make_record(
            # (run ids are unique within a collection, as metalab's are)
            f"r{i:04d}" if seed == 1 else f"s{seed}-{i:04d}", experiment_id, params=params, metrics=metrics, status=status,
            heartbeat_at=beat, finished_at=None if beat else T0 + timedelta(seconds=i + 1),
            seed={"root_seed": i % 4, "replicate_index": i % 4},
            started_at=T0 + timedelta(seconds=i)))


def check_derived(store: Store, reference: Store,
                  flush: Callable[[], Any] | None = None) -> None:
    """Derived values of every third run of :func:`fill` as keys, values and filters:
    the figures ``store`` computes in its index equal those of ``reference``'s
    loaded runs (``flush``: makes the index current after the writes)."""
    from metalab import load_results
    from metalab.analysis import plot_figure
    from metalab.analysis._plots_pushdown import pushed_figure

    for i in range(0, 240, 3):
        store.put_derived(f"r{i:04d}", {"z": (i % 7) * 0.5, "tag": ["p", "q"][i % 2]})
    if flush is not None:
        flush()
    for spec in (PlotSpec("line", "params.lr", "derived.z", "derived.tag"),
                 PlotSpec("bar", "derived.tag", "metrics.acc")):
        for where in (None, "derived.z > 1"):
            pushed = pushed_figure(store, None, where, spec)
            assert pushed is not None
            loaded = load_results(reference, where=where, columns=spec.fields())
            same(pushed, plot_figure(loaded, spec))


def same(a: Any, b: Any, rel: float = 1e-9, path: str = "") -> None:
    """Assert two figures are equal, floats within ``rel`` (sums taken in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], rel, f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, rel, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
