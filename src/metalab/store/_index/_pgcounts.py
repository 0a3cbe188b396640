"""Counts of runs by status from the PostgreSQL index (:meth:`PostgresQueries.status_counts`).

One ``GROUP BY`` over the narrow ``runs`` table, the status judged by the
lost rule both engines share (:func:`~metalab.query._liveness.lost_status_sql`,
the heartbeat cast to a time as in ``_pgsql.PgCompiler``).  Rows whose
stored status is not a run status (records the file scan skips) are not
counted, as in a scan.  :func:`status_overview` adds, in the same ``GROUP
BY``, the latest start and finish and how many of a list of planned run ids
have a row: the run ids come back as one array per status, looked up in a
Python set (at 10^5 runs: 0.12 s, against 0.33 s for a join with the planned
ids sent as an array, and 0.01 s for the counts alone).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from metalab._internal._time import to_iso
from metalab.query._liveness import lost_status_sql
from metalab.query._records import STATUS_VALUES
from metalab.store._index._pgsql import TIME_RE, from_micros, stamp_sql

if TYPE_CHECKING:
    from metalab.store._index._postgres import PostgresIndex

__all__ = ["status_counts", "status_overview"]


def status_counts(index: PostgresIndex, experiment_id: str | None,
                  cutoff: int) -> dict[str, int]:
    """``{status: runs}`` of ``experiment_id`` (None: every experiment) at ``cutoff``
    (µs since the epoch).

    Raises:
        IndexUnavailableError: the index cannot be reached.
        StoreError: another database error.
    """
    counts: dict[str, int] = status_overview(index, experiment_id, cutoff, None)["counts"]
    return counts


def status_overview(index: PostgresIndex, experiment_id: str | None, cutoff: int,
                    planned: Collection[str] | None) -> dict[str, Any]:
    """:func:`status_counts` with ``last_started_at`` / ``last_finished_at`` (ISO texts
    as the run files hold them, None without one) and ``planned_recorded`` (how
    many runs have one of ``planned`` as their id; None without ``planned``), in
    one ``GROUP BY``.

    Raises:
        IndexUnavailableError: the index cannot be reached.
        StoreError: another database error.
    """
    status = lost_status_sql("r.status", stamp_sql("r.heartbeat"), "%s")
    ids = "array_agg(r.run_id)" if planned is not None else "NULL"
    where, args = ("WHERE r.experiment_id = %s", [experiment_id]) \
        if experiment_id is not None else ("", [])
    with index.connection() as conn:
        rows = conn.execute(
            index._q(f"SELECT {status}, count(*), max(r.started_at), max(r.finished_at), "
                     f"{ids} FROM {{s}}.runs r {where} GROUP BY 1"),
            [TIME_RE, from_micros(cutoff), *args]).fetchall()
    known = {*STATUS_VALUES, "lost"}
    rows = [r for r in rows if r[0] in known]
    starts = [r[2] for r in rows if r[2] is not None]
    ends = [r[3] for r in rows if r[3] is not None]
    hits = None
    if planned is not None:
        wanted = planned if isinstance(planned, (set, frozenset)) else frozenset(planned)
        hits = sum(1 for r in rows for rid in r[4] if rid in wanted)
    return {"counts": {r[0]: int(r[1]) for r in rows},
            "last_started_at": to_iso(max(starts)) if starts else None,
            "last_finished_at": to_iso(max(ends)) if ends else None,
            "planned_recorded": hits}
