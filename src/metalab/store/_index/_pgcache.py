"""The kept answers of PostgreSQL loads: ``run_table_cache``, valid while nothing changed.

The default full load of one experiment (every run, every column) is kept by
the server with the generation of the experiment it was computed at and the
bounds of its running runs' liveness stamps; a later load at the same
generation whose lost cutoff changes no running run's status gets the kept
bytes instead of running its statements.  Never required for correctness:
any failure reading or writing it is logged at debug level and the load runs
its statements.  Thread-safe (each call takes its own connection).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any, Protocol

from metalab._errors import IndexUnavailableError, StoreError
from metalab.store._index._pgconnect import psycopg_module
from metalab.store._index._pgsql import TIME_RE, from_micros, stamp_sql

__all__ = ["CACHE_MAX_BYTES", "CACHE_QUIET_S", "RunTableCache"]

log = logging.getLogger("metalab.store.postgres")

#: a load answer larger than this is not kept in ``run_table_cache``
CACHE_MAX_BYTES = 256 * 1024 * 1024
#: a load answer is kept only for an experiment not written for this long: a
#: sweep still writing would make it stale at once, and keeping it costs the
#: load about a third more (100k runs, 2026-11-27)
CACHE_QUIET_S = 5.0
#: first bytes of a ``run_table_cache`` payload (a changed layout: a new magic);
#: then the 16-byte layout digest of the load's statements, then the answer
_CACHE_MAGIC = b"MLT2"
#: keeps a load answer with the bounds of its running runs' heartbeats
_CACHE_STORE_SQL = (
    "INSERT INTO {s}.run_table_cache "
    "(experiment_id, generation, lost_max, fresh_min, built_at, payload) "
    "SELECT %(e)s, %(g)s, max(hb) FILTER (WHERE hb < %(cut)s), "
    "min(hb) FILTER (WHERE hb >= %(cut)s), now(), %(p)b FROM ("
    " SELECT " + stamp_sql("heartbeat", "%(re)s") + " AS hb"
    " FROM {s}.runs WHERE experiment_id = %(e)s AND status = 'running'"
    ") t ON CONFLICT (experiment_id) DO UPDATE SET "
    "generation = EXCLUDED.generation, lost_max = EXCLUDED.lost_max, "
    "fresh_min = EXCLUDED.fresh_min, built_at = EXCLUDED.built_at, "
    "payload = EXCLUDED.payload "
    "WHERE {s}.run_table_cache.generation <= EXCLUDED.generation"
)


class PostgresIndex(Protocol):
    """What the cache uses of its :class:`~._postgres.PostgresIndex` (named by this
    interface, not imported: the index module imports this one)."""

    def connection(self) -> AbstractContextManager[Any]: ...

    def _q(self, text: str) -> Any: ...

    def _scrub(self, text: str) -> str: ...


class RunTableCache:
    """The ``run_table_cache`` rows of one index (see the module docstring)."""

    def __init__(self, index: PostgresIndex) -> None:
        self.index = index

    def lookup(
        self, experiment_id: str, cutoff: int, layout: bytes,
    ) -> tuple[memoryview | None, int | None, bool]:
        """The kept answer of the default full load of an experiment, if valid now.

        Returns ``(body, generation, quiet)``: the bytes kept by
        :meth:`store` (None unless the row exists, has
        ``layout``, was kept at the experiment's current ``generation`` and
        no running run changes its lost / not lost status at ``cutoff`` (µs):
        ``lost_max < cutoff <= fresh_min``), the experiment's generation
        (None: not indexed), and whether it was last written
        :data:`CACHE_QUIET_S` or more ago.  One short transaction, read
        *before* the load's own snapshot: an answer computed later and kept
        with this generation is never used if a write came in between (the
        write drew a newer generation).  Any error reading the cache (a
        dropped table, no privilege) is logged at debug level: no body.
        """
        with self.index.connection() as conn:
            try:
                with conn.transaction():
                    got = conn.execute(
                        self.index._q(
                            "SELECT e.generation, "
                            "e.updated_at <= now() - make_interval(secs => %(quiet)s), "
                            "CASE WHEN c.generation = e.generation "
                            "AND (c.lost_max IS NULL OR c.lost_max < %(cut)s) "
                            "AND (c.fresh_min IS NULL OR %(cut)s <= c.fresh_min) "
                            "THEN c.payload END "
                            "FROM {s}.experiments e LEFT JOIN {s}.run_table_cache c "
                            "ON c.experiment_id = e.experiment_id WHERE e.experiment_id = %(e)s"
                        ),
                        {"e": experiment_id, "cut": from_micros(cutoff), "quiet": CACHE_QUIET_S},
                        binary=True,
                    ).fetchone()
            except psycopg_module().Error as exc:  # (the connection's own failures: raised)
                if conn.broken:
                    raise
                log.debug("run table cache of %r not read: %s", experiment_id,
                          self.index._scrub(str(exc)))
                return None, None, False
        if got is None:
            return None, None, False
        generation, quiet, payload = int(got[0]), bool(got[1]), got[2]
        if payload is None:
            return None, generation, quiet
        view = memoryview(payload)
        head = _CACHE_MAGIC + layout
        if bytes(view[:len(head)]) != head:
            log.debug("run table cache of %r has another layout; recomputed", experiment_id)
            return None, generation, quiet
        return view[len(head):], generation, quiet

    def store(self, experiment_id: str, generation: int, cutoff: int,
                          layout: bytes, body: bytes) -> None:
        """Keep ``body`` as the answer of the default full load at ``generation``
        (read by :meth:`lookup` before the load's snapshot).

        Skipped above :data:`CACHE_MAX_BYTES`; an older generation never
        replaces a newer one; any error is logged at debug level and ignored.
        """
        payload = _CACHE_MAGIC + layout + body
        if len(payload) > CACHE_MAX_BYTES:
            log.debug("run table cache of %r not written: %d bytes", experiment_id, len(payload))
            return
        self._write(experiment_id, generation, cutoff, payload)

    def _write(self, experiment_id: str, generation: int, cutoff: int,
                     payload: bytes) -> None:
        try:
            with self.index.connection() as conn:
                try:
                    with conn.transaction():
                        conn.execute(self.index._q(_CACHE_STORE_SQL), {
                            "e": experiment_id, "g": generation, "cut": from_micros(cutoff),
                            "p": payload, "re": TIME_RE})
                except psycopg_module().Error as exc:
                    if conn.broken:
                        raise
                    log.debug("run table cache of %r not written: %s", experiment_id,
                              self.index._scrub(str(exc)))
        except (IndexUnavailableError, StoreError) as exc:  # the answer is returned anyway
            log.debug("run table cache of %r not written: %s", experiment_id, exc)
