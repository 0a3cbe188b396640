"""Counts of runs by status from the PostgreSQL index (:meth:`PostgresQueries.status_counts`).

One ``GROUP BY`` over the narrow ``runs`` table, the status judged by the
lost rule both engines share (:func:`~metalab.query._liveness.lost_status_sql`,
the heartbeat cast to a time as in ``_pgsql.PgCompiler``).  Rows whose
stored status is not a run status (records the file scan skips) are not
counted, as in a scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalab.query._liveness import lost_status_sql
from metalab.query._records import STATUS_VALUES
from metalab.store._index._pgsql import TIME_RE, from_micros, stamp_sql

if TYPE_CHECKING:
    from metalab.store._index._postgres import PostgresIndex

__all__ = ["status_counts"]


def status_counts(index: PostgresIndex, experiment_id: str | None,
                  cutoff: int) -> dict[str, int]:
    """``{status: runs}`` of ``experiment_id`` (None: every experiment) at ``cutoff``
    (µs since the epoch).

    Raises:
        IndexUnavailableError: the index cannot be reached.
        StoreError: another database error.
    """
    status = lost_status_sql("status", stamp_sql("heartbeat"), "%s")
    where, args = ("WHERE experiment_id = %s", [experiment_id]) if experiment_id is not None \
        else ("", [])
    with index.connection() as conn:
        rows = conn.execute(
            index._q(f"SELECT {status}, count(*) FROM {{s}}.runs {where} GROUP BY 1"),
            [TIME_RE, from_micros(cutoff), *args]).fetchall()
    known = {*STATUS_VALUES, "lost"}
    return {s: int(n) for s, n in rows if s in known}
