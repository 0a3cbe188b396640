"""Helpers shared by the PostgreSQL store tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from metalab.model import RunRecord
from metalab.store import FileStoreConfig
from metalab.testing import make_record


def index_rows(conn: psycopg.Connection[Any], schema: str, experiment_id: str | None = None
               ) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(experiment_id, run_id): record document}`` straight from the index tables.

    A run present in only one of ``runs`` / ``run_records`` fails the caller's
    comparison (its document or its ids come back as None).
    """
    from metalab._internal._json import loads

    exists = conn.execute("SELECT to_regclass(format('%%I.runs', %s::text))", (schema,)).fetchone()
    if exists is None or exists[0] is None:
        return {}
    # a run is indexed when it has its query row and its record text
    q = sql.SQL(
        "SELECT r.experiment_id, r.run_id, m.record FROM {s}.runs r "
        "FULL JOIN {s}.run_records m USING (experiment_id, run_id)"
    ).format(s=sql.Identifier(schema))
    rows = conn.execute(q).fetchall()
    return {(e, r): (loads(d) if d is not None else None) for e, r, d in rows if experiment_id is None or e == experiment_id}


def file_docs(file_root: Path, experiment_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    fs = FileStoreConfig(root=str(file_root), experiment_id=experiment_id).connect()
    return {(experiment_id, d["run_id"]): d for d in fs.iter_run_documents()}


def records(experiment_id: str, n: int, start: int = 0, **kw: Any) -> list[RunRecord]:
    return [
        make_record(f"r{i:05d}", experiment_id, params={"i": i, "lr": 0.1 * i}, **kw)
        for i in range(start, start + n)
    ]


def in_child_that_never_sends(body: Callable[[], None]) -> None:
    """Run ``body`` in a forked child whose index changes never leave it (its
    flusher hangs on every batch); the child then dies hard (no flush, no atexit)."""
    from metalab.store._postgres import _flusher

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _flusher.IndexFlusher._send = lambda self, batch: time.sleep(60)  # type: ignore[method-assign]
            body()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
