"""When a run is lost: the one rule, in Python and as SQL for both index engines.

Workers never write ``lost``.  A document whose stored status is ``running``
reads as ``lost`` when its *liveness stamp* is strictly before the *cutoff*:

* the liveness stamp is ``heartbeat_at`` when it is set (not null, not the
  empty text), else ``started_at``; a stamp that is not an ISO 8601 time (a
  naive time is UTC) means "never lost";
* the cutoff is ``now - lost_after`` (:func:`lost_cutoff`, in µs since the
  epoch), ``lost_after`` being :func:`lost_after_seconds` unless given.

So a run whose stamp is exactly ``lost_after`` seconds old still reads
``running``; one microsecond older reads ``lost``.  Any other document reads
as its stored status, and a missing or non-text status as ``None``.

The SQL form (:func:`lost_status_sql`) is the same rule over an index row
whose liveness stamp is already a time (or NULL); every engine evaluates the
rule against one cutoff per query, so all runs of an answer are judged at
the same instant.  Pure functions; thread-safe.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from metalab.query._ast import to_micros

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_LOST_AFTER_S",
    "HEARTBEAT_INTERVAL_ENV",
    "LOST_AFTER_ENV",
    "effective_status",
    "heartbeat_interval",
    "liveness_stamp",
    "lost_after_seconds",
    "lost_cutoff",
    "lost_status_sql",
    "parse_time",
    "status_at_cutoff",
]

log = logging.getLogger("metalab.store")

#: a ``running`` record whose heartbeat is older than this is ``lost`` (seconds)
DEFAULT_LOST_AFTER_S = 60.0
#: the environment variable that overrides :data:`DEFAULT_LOST_AFTER_S`
LOST_AFTER_ENV = "METALAB_LOST_AFTER"
#: seconds between two heartbeats of a running run
DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
#: the environment variable that overrides :data:`DEFAULT_HEARTBEAT_INTERVAL_S`
HEARTBEAT_INTERVAL_ENV = "METALAB_HEARTBEAT_INTERVAL"
_MICROS_PER_S = 1_000_000


def _seconds_setting(env: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``env`` (read at
    each call), else ``default`` (a value that is not a positive number is logged)."""
    raw = os.environ.get(env, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s s", env, raw, default)
        return default
    return value if value > 0 else default


def lost_after_seconds() -> float:
    """Heartbeat age after which a ``running`` run counts as lost.

    ``METALAB_LOST_AFTER`` (seconds) overrides :data:`DEFAULT_LOST_AFTER_S`;
    it is read at each call (a value that is not a positive number is
    logged and the default used).  Workers refresh the heartbeat every
    :func:`heartbeat_interval` seconds, so keep this a few intervals long.
    """
    return _seconds_setting(LOST_AFTER_ENV, DEFAULT_LOST_AFTER_S)


def heartbeat_interval() -> float:
    """Seconds between two heartbeats of a running run: ``METALAB_HEARTBEAT_INTERVAL``,
    else :data:`DEFAULT_HEARTBEAT_INTERVAL_S` (read at each call, as
    :func:`lost_after_seconds`)."""
    return _seconds_setting(HEARTBEAT_INTERVAL_ENV, DEFAULT_HEARTBEAT_INTERVAL_S)


def lost_cutoff(now: datetime | None = None, lost_after: float | None = None) -> int:
    """Instant (µs since the epoch) before which a running run's stamp means ``lost``.

    ``now`` defaults to the current time (an aware time in any zone, or a
    naive one read as UTC); ``lost_after`` to :func:`lost_after_seconds`
    (``0`` is a limit, not "use the default").
    """
    current = now or datetime.now(UTC)
    limit = lost_after if lost_after is not None else lost_after_seconds()
    return to_micros(current) - round(limit * _MICROS_PER_S)


def parse_time(value: Any) -> int | None:
    """µs since the epoch of an ISO string (naive = UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)  # (Python >= 3.11 reads a trailing "Z")
    except ValueError:
        return None
    return to_micros(dt)


def liveness_stamp(heartbeat_at: Any, started_at: Any) -> Any:
    """The raw liveness stamp of a run: ``heartbeat_at`` unless it is null or empty, else
    ``started_at``.

    Not parsed (each index keeps it in its own typed form); see
    :func:`status_at_cutoff` for how it is read.
    """
    return started_at if heartbeat_at is None or heartbeat_at == "" else heartbeat_at


def status_at_cutoff(doc: dict[str, Any], cutoff: int) -> str | None:
    """The status a reader sees for ``doc``, judged against ``cutoff`` (µs; see module doc)."""
    status = doc.get("status")
    if not isinstance(status, str):
        return None
    if status == "running":
        stamp = parse_time(liveness_stamp(doc.get("heartbeat_at"), doc.get("started_at")))
        if stamp is not None and stamp < cutoff:
            return "lost"
    return status


def effective_status(
    doc: dict[str, Any], now: datetime | None = None, lost_after: float | None = None
) -> str | None:
    """The status a reader should show for a raw run document (see the module doc).

    ``now`` and ``lost_after`` as for :func:`lost_cutoff`.  None when the
    document has no text status.
    """
    return status_at_cutoff(doc, lost_cutoff(now, lost_after))


#: the lost rule over an index row (``{status}``, ``{stamp}``: SQL of the stored
#: status and of the liveness stamp as a time or NULL; ``{cutoff}``: a placeholder)
_LOST_SQL = (
    "(CASE WHEN {status} = 'running' AND {stamp} < {cutoff} THEN 'lost' ELSE {status} END)"
)


def lost_status_sql(status: str, stamp: str, cutoff: str) -> str:
    """SQL of the status a reader sees, for SQLite and PostgreSQL alike.

    ``status``: the stored status column; ``stamp``: an expression giving the
    liveness stamp as a comparable time (µs in the SQLite catalog, a
    ``timestamptz`` in PostgreSQL) or NULL when there is none (never lost);
    ``cutoff``: the placeholder bound to the cutoff in that same form.  Never
    NULL unless the stored status is.
    """
    return _LOST_SQL.format(status=status, stamp=stamp, cutoff=cutoff)
