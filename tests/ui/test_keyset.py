"""Keyset pagination: walking a sorted query page by page gives every run once, in order."""

from __future__ import annotations

import math
import random

import pytest

from metalab.query import build_query, run_query
from metalab.ui._keyset import after_filter, decode_cursor, encode_cursor

VALUES = [1, 2, 2.5, -3, math.inf, -math.inf, math.nan, "a", "b", "", True, False, None, [1]]


def _docs(rng: random.Random, n: int) -> list[dict]:
    docs = []
    for i in range(n):
        params = {}
        for name in ("x", "y"):
            v = rng.choice(VALUES)
            if v is not None and not (isinstance(v, float) and not math.isfinite(v)):
                params[name] = v
        metric = rng.choice([0.5, 1.0, math.inf, -math.inf, math.nan, None, 1.0])
        metrics = {} if metric is None else {"m": metric}
        docs.append({"run_id": f"r{i:03d}", "experiment_id": "e:1", "status": "success",
                     "started_at": f"2026-01-0{1 + i % 3}T00:00:00Z", "params": params,
                     "metrics": metrics})
    return docs


def _stored(value):
    """A metric as the files hold it (non-finite numbers as texts)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _get(doc, path):
    ns, _, name = path.partition(".")
    return (doc.get(ns) or {}).get(name) if name else doc.get(ns)


@pytest.mark.parametrize("order", [
    ["params.x"], ["-params.x"], ["metrics.m", "-params.y"], ["-metrics.m"],
    ["started_at", "params.x"], ["-started_at"], ["status", "-params.y"], ["run_id"],
])
@pytest.mark.parametrize("seed", range(4))
def test_pages_cover_the_query_once_in_order(order: list[str], seed: int) -> None:
    docs = _docs(random.Random(seed), 60)
    columns = [o.lstrip("-") for o in order]
    full = [d["run_id"] for d in run_query(docs, build_query("", order_by=order))]
    got: list[str] = []
    where = ""
    for _ in range(100):
        page = run_query(docs, build_query(where, columns=columns, order_by=order, limit=7))
        if not page:
            break
        got += [d["run_id"] for d in page]
        last = page[-1]
        values = [_stored(_get(last, c)) for c in columns]
        cursor = encode_cursor(values, last["run_id"])
        vals, rid = decode_cursor(cursor)
        where = after_filter([(c, o.startswith("-")) for c, o in zip(columns, order, strict=True)],
                             vals, rid)
    assert got == full


@pytest.mark.parametrize("order", [["duration_ms"], ["-duration_ms"],
                                   ["-duration_ms", "params.x"]])
@pytest.mark.parametrize("limit", [1, 2])
def test_pages_sorted_by_duration_cover_the_query_once_in_order(order: list[str],
                                                                limit: int) -> None:
    docs = _docs(random.Random(7), 15)
    for i, doc in enumerate(docs):
        if i % 4:  # (some runs have no duration)
            doc["duration_ms"] = (i * 37) % 11 * 100
    columns = [o.lstrip("-") for o in order]
    full = [d["run_id"] for d in run_query(docs, build_query("", order_by=order))]
    got: list[str] = []
    where = ""
    for _ in range(len(docs) + 2):
        page = run_query(docs, build_query(where, columns=columns, order_by=order, limit=limit))
        if not page:
            break
        got += [d["run_id"] for d in page]
        last = page[-1]
        vals, rid = decode_cursor(encode_cursor([_get(last, c) for c in columns],
                                                last["run_id"]))
        where = after_filter([(c, o.startswith("-")) for c, o in zip(columns, order, strict=True)],
                             vals, rid)
    assert got == full
