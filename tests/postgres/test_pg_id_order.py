"""Run ids and experiment ids compare and order bytewise on PostgreSQL, as in the
files and the FileStore catalog, whatever the server's collation (the index
on ``(experiment_id, run_id COLLATE "C")`` serves those pages)."""

from __future__ import annotations

from typing import Any

import pytest

from metalab.store import FileStoreConfig
from metalab.testing import make_record

#: ids whose bytewise order differs from a dictionary order (case, accents, digits)
IDS = ["B2", "a1", "Z9", "b0", "\u00e91", "A", "aa", "_x", "0f"]
OPS = ["<", "<=", ">", ">=", "=", "!="]


@pytest.fixture
def stores(make_store: Any, file_root: Any) -> tuple[Any, Any]:
    pg = make_store(None)
    for eid in ("exp:1", "Exp:2"):
        for k, rid in enumerate(IDS):
            pg.put_run_record(make_record(f"{rid}-{eid[0]}", eid, params={"k": k % 3}))
    assert pg.flush()
    return pg, FileStoreConfig(root=str(file_root)).connect()


def _bytewise(op: str, a: str, b: str) -> bool:
    x, y = a.encode(), b.encode()
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "=": x == y, "!=": x != y}[op]


@pytest.mark.parametrize("op", OPS)
def test_run_id_comparisons_are_bytewise(stores: tuple[Any, Any], op: str) -> None:
    pg, files = stores
    every = {d["run_id"] for d in pg.query_runs()}
    for lit in ("a", "B2-e", "\u00e9", "Z"):
        where = f'run_id {op} "{lit}"'
        want = {rid for rid in every if _bytewise(op, rid, lit)}
        assert {d["run_id"] for d in pg.query_runs(where=where)} == want, where
        assert {d["run_id"] for d in files.query_runs(where=where)} == want, where
        negated = {d["run_id"] for d in pg.query_runs(where=f"not ({where})")}
        assert negated == every - want, where
    for lit in ("exp:1", "Exp:2", "e"):
        where = f'experiment_id {op} "{lit}"'
        want = {d["run_id"] for d in pg.query_runs() if _bytewise(op, d["experiment_id"], lit)}
        assert {d["run_id"] for d in pg.query_runs(where=where)} == want, where


def test_pages_of_one_experiment_come_in_run_id_order(stores: tuple[Any, Any]) -> None:
    pg, files = stores
    ids = sorted((f"{rid}-e" for rid in IDS), key=str.encode)
    for store in (pg, files):
        got = [d["run_id"] for d in store.query_runs("exp:1", None, columns=["params.k"])]
        assert got == ids
        first = store.query_runs("exp:1", None, columns=["params.k"], limit=4)
        after = store.query_runs("exp:1", f'run_id > "{first[-1]["run_id"]}"',
                                 columns=["params.k"], limit=4)
        assert [d["run_id"] for d in first + after] == ids[:8]
        # ties of a sort field by run id, bytewise
        by_k = store.query_runs("exp:1", None, columns=["params.k"], order_by=["params.k"])
        assert [d["run_id"] for d in by_k] == sorted(
            ids, key=lambda r: (IDS.index(r[:-2]) % 3, r.encode()))
    both = [(d["experiment_id"], d["run_id"]) for d in pg.query_runs(columns=["params.k"])]
    assert both == sorted(both, key=lambda p: (p[0].encode(), p[1].encode()))
