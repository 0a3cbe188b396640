"""``PostgresIndex``: the SQL side of a PostgresStore (no file access here).

Connections come from a small :class:`psycopg_pool.ConnectionPool` per index
object and process, opened on first use; it keeps no connection open while
idle (``min_size=0``, idle connections close after :data:`POOL_MAX_IDLE`).  A circuit breaker (shared by every
index of the same target in the process) stops calling a server that just
failed to answer: after a connection failure, calls fail at once with
:class:`~metalab.IndexUnavailableError` for a back-off period that doubles with
each further failure (capped), so a caller with the database down pays one
``connect_timeout`` per period, not one per call.

Every identifier is composed with :mod:`psycopg.sql`; every value is a bound
parameter.  Error messages name host, port, database and schema, never the
password.

Whole-experiment syncs (binary COPY, bulk loads) and planner statistics are
the mixin of ``_pgsync``.

Thread safety: methods may be called from several threads (the pool hands out
one connection per call).  After ``fork`` the child opens its own pool.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import IndexUnavailableError, QueryError, StoreError
from metalab._internal._gc import gc_paused
from metalab._internal._json import dumps, loads
from metalab._internal._redact import redact
from metalab.store._index import _pgsync
from metalab.store._index._pgcache import RunTableCache
from metalab.store._index._pgconnect import (
    CircuitBreaker,
    as_text,
    breaker_for,
    password_of,
    psycopg_module,
    texts_as_bytes,
)
from metalab.store._index._pgsql import field_index_name, number_sql
from metalab.store._index._pgsync import PostgresSync
from metalab.store._index._rows import (
    FROM_TEXT_SQL,
    ROW_COLUMNS,
    ROW_TYPES,
    RUN_COLUMNS,
    derived_row,
    jsonb_dumps,
    run_row,
)
from metalab.store._postgres._schema import ensure_schema

if TYPE_CHECKING:
    import psycopg

    from metalab.store._postgres._config import PostgresStoreConfig

__all__ = ["RUN_COLUMNS", "CircuitBreaker", "PostgresIndex"]

log = logging.getLogger("metalab.store.postgres")

#: seconds an unused pooled connection stays open (connections are short-lived)
POOL_MAX_IDLE = 10.0


#: the JSON type of a metrics / derived value ``k.value`` in the field catalog: the
#: texts of non-finite numbers ("Infinity", see metalab._internal._json) are numbers
_NUMBER_TYPE = ("(CASE WHEN k.value IN ('\"Infinity\"'::jsonb, '\"-Infinity\"'::jsonb, "
                "'\"NaN\"'::jsonb) THEN 'number' ELSE jsonb_typeof(k.value) END)")


def _run_conditions(experiment_id: str | None, status: str | None, eid_of: str = "",
                    status_of: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions (and their arguments) selecting the runs of ``experiment_id``
    with ``status`` (None: any); ``eid_of`` / ``status_of``: the table alias of each
    column (``"m."``)."""
    conds: list[str] = []
    args: list[Any] = []
    if experiment_id is not None:
        conds.append(f"{eid_of}experiment_id = %s")
        args.append(experiment_id)
    if status is not None:
        conds.append(f"{status_of}status = %s")
        args.append(status)
    return conds, args


# ------------------------------------------------------------------------ index
class PostgresIndex(PostgresSync):
    """SQL operations on the index tables of one schema.  See the module docstring."""

    def __init__(self, config: PostgresStoreConfig) -> None:
        self._conninfo = config.connection_string
        self.schema = config.schema
        self._timeout = config.connect_timeout
        self._max_size = config.pool_max_size
        self.target = config.display_target
        self._secret = password_of(config.connection_string)
        self.breaker = breaker_for(config.index_key)
        self._pool: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._schema_ready = False
        #: set when this object created the index tables (the index was empty)
        self.created_schema = False
        #: informational (tests, benchmarks): what answered the last columnar
        #: load through this object, ``"cache"`` (the kept answer of
        #: ``run_table_cache``) or ``"query"`` (:meth:`run_tables`); None before
        #: the first.  Set by ``_pgquery.table_index``; not synchronised between threads
        self.last_table_source: str | None = None
        #: the kept answers of default full loads (``run_table_cache``)
        self.table_cache = RunTableCache(self)

    # ------------------------------------------------------------ messages
    def _scrub(self, text: str) -> str:
        text = redact(text)
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def _where(self) -> str:
        return f"PostgreSQL index at {self.target} (schema {self.schema!r})"

    # ------------------------------------------------------------ connections
    def _connect_kwargs(self) -> dict[str, Any]:
        return {"connect_timeout": max(1, math.ceil(self._timeout)), "autocommit": True}

    def _get_pool(self) -> Any:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                return self._pool
            if self._pid != os.getpid():  # forked: the parent's pool is not ours
                self._pool = None
                self._pid = os.getpid()
                self._schema_ready = False
            psycopg = psycopg_module()
            from psycopg_pool import ConnectionPool

            # a direct probe fails fast (e.g. "connection refused"), where the
            # pool would keep retrying for its whole timeout
            try:
                probe = psycopg.connect(self._conninfo, **self._connect_kwargs())
            except psycopg.Error as exc:
                msg = self._scrub(str(exc).strip())
                self.breaker.failure(msg)
                raise IndexUnavailableError(
                    f"cannot connect to the {self._where()}: {msg}. Files keep being written; "
                    "the index catches up when the server is back (or run store.reconcile())"
                ) from None
            probe.close()
            # min_size 0 + a short max_idle: a worker holds no connection while
            # it does not write, so hundreds of workers do not pin the server
            self._pool = ConnectionPool(
                self._conninfo,
                min_size=0,
                max_size=self._max_size,
                kwargs=self._connect_kwargs(),
                timeout=self._timeout,
                max_idle=POOL_MAX_IDLE,
                num_workers=1,
                reconnect_timeout=max(self._timeout, 10.0),
                name=f"metalab-index-{self.target}",
                open=True,
            )
            return self._pool

    def _drop_pool(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                pool.close(timeout=0.5)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection to a ready index (tables created or migrated).

        Raises:
            IndexUnavailableError: the server cannot be reached, or the circuit
                breaker is open after a recent failure.
            StoreError: any other database error (message without secrets).
        """
        if not self.breaker.allow():
            raise IndexUnavailableError(
                f"{self._where()} was unreachable ({self.breaker.last_error}); next try in "
                f"{self.breaker.retry_in():.1f}s"
            )
        pool = self._get_pool()
        psycopg = psycopg_module()
        from psycopg_pool import PoolTimeout

        conn = None
        try:
            with pool.connection() as conn:
                if not self._schema_ready:
                    self.created_schema = ensure_schema(conn, self.schema) or self.created_schema
                    self._schema_ready = True
                yield conn
        except PoolTimeout as exc:
            msg = self._scrub(str(exc))
            self.breaker.failure(msg)
            self._drop_pool()
            raise IndexUnavailableError(f"{self._where()} is unreachable: {msg}") from None
        except psycopg.Error as exc:
            msg = self._scrub(str(exc).strip())
            if conn is None or conn.closed or conn.broken:
                self.breaker.failure(msg)
                self._drop_pool()
                raise IndexUnavailableError(f"{self._where()} is unreachable: {msg}") from None
            if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
                self._schema_ready = False  # dropped under us: recreate next time
                raise IndexUnavailableError(
                    f"{self._where()} lost its tables ({msg}); they are recreated on the next "
                    "call; run store.rebuild_index() to refill them from the files"
                ) from None
            raise StoreError(f"{self._where()}: {msg}") from None
        self.breaker.success()

    def ping(self) -> None:
        """Connect and make sure the tables exist (raises like :meth:`connection`)."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def check_schema(self) -> None:
        """Check the index tables again as on first use: a newer metalab may have
        migrated them since this object last looked (an older version is
        migrated, missing tables are created).

        Raises:
            StoreError: the schema was made by a newer metalab, or its version
                is unreadable (nothing is changed).
            IndexUnavailableError: as :meth:`connection`.
        """
        self._schema_ready = False
        self.ping()

    def close(self) -> None:
        self._drop_pool()

    def _q(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    # ------------------------------------------------------------ writes
    def _upsert_runs_sql(self, source: str) -> Any:
        """Upsert ``source`` (a SELECT of the runs columns + ``record``) into both tables.

        Only runs whose record text changed (or that are missing from
        ``runs``) are written: re-sending an unchanged run leaves no dead rows.
        """
        cols = ", ".join(RUN_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in RUN_COLUMNS[2:])
        return self._q(
            f"WITH src AS ({source}), "
            "rec AS (INSERT INTO {s}.run_records (experiment_id, run_id, record) "
            " SELECT experiment_id, run_id, record FROM src "
            " ON CONFLICT (experiment_id, run_id) DO UPDATE SET record = EXCLUDED.record "
            " WHERE {s}.run_records.record IS DISTINCT FROM EXCLUDED.record "
            " RETURNING experiment_id, run_id) "
            f"INSERT INTO {{s}}.runs ({cols}) SELECT {cols} FROM src "
            "WHERE EXISTS (SELECT 1 FROM rec WHERE rec.experiment_id = src.experiment_id "
            " AND rec.run_id = src.run_id) OR NOT EXISTS (SELECT 1 FROM {s}.runs o "
            " WHERE o.experiment_id = src.experiment_id AND o.run_id = src.run_id) "
            f"ON CONFLICT (experiment_id, run_id) DO UPDATE SET {updates}"
        )

    def _upsert_derived_sql(self, source: str) -> Any:
        return self._q(
            f'INSERT INTO {{s}}.derived (experiment_id, run_id, "values", doc) {source} '
            'ON CONFLICT (experiment_id, run_id) DO UPDATE SET "values" = EXCLUDED."values", '
            "doc = EXCLUDED.doc WHERE {s}.derived.doc IS DISTINCT FROM EXCLUDED.doc"
        )

    def _sequence(self, conn: psycopg.Connection[Any]) -> str:
        """The generation sequence's name as ``regclass`` input (any schema name)."""
        from psycopg import sql

        return sql.Identifier(self.schema, "generation_seq").as_string(conn)

    def _touch(self, conn: psycopg.Connection[Any], experiment_ids: Iterable[str]) -> None:
        """Mark the experiments changed, in the writing transaction (every write calls it).

        The field catalog becomes stale and the experiment gets a new
        ``generation`` (so its cached load answer is no longer used).
        """
        # one statement (an executemany would enter pipeline mode for each batch)
        conn.execute(
            self._q(
                "INSERT INTO {s}.experiments (experiment_id, catalog_stale, updated_at, "
                "generation) "
                "SELECT e, true, now(), nextval(%(seq)s::regclass) "
                "FROM unnest(%(e)s::text[]) AS t(e) "
                "ON CONFLICT (experiment_id) DO UPDATE "
                "SET catalog_stale = true, updated_at = now(), "
                "generation = nextval(%(seq)s::regclass)"
            ),
            {"e": sorted(set(experiment_ids)), "seq": self._sequence(conn)},
        )

    def apply(
        self,
        *,
        runs: Sequence[tuple[str, dict[str, Any] | bytes]] = (),
        delete_runs: list[tuple[str, str]] = (),  # type: ignore[assignment]
        derived: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
        delete_derived: list[tuple[str, str]] = (),  # type: ignore[assignment]
        manifests: dict[str, list[tuple[datetime, dict[str, Any]]]] | None = None,
    ) -> None:
        """Apply a batch of changes in one transaction.

        ``runs``: (experiment_id, record document or its JSON bytes) to
        upsert; ``delete_runs``:
        (experiment_id, run_id) to remove (with their derived row);
        ``derived``: (experiment_id, run_id, values); ``manifests``: the full
        manifest list of each experiment named (replaces what is indexed).
        """
        touched = {e for e, _ in runs} | {e for e, _ in delete_runs}
        touched |= {e for e, _, _ in derived} | {e for e, _ in delete_derived}
        touched |= set(manifests or {})
        if not touched:
            return
        # documents as JSON text; the server derives the query columns from it
        # (one statement per batch, little Python work per run).  Documents
        # holding a NUL escape (jsonb cannot) take the row-by-row path.
        texts: list[tuple[str, str]] = []
        odd: list[tuple[str, dict[str, Any]]] = []
        for e, d in runs:
            if isinstance(d, bytes):  # the record file's bytes: a RunRecord's document
                if b"\\u0000" in d:
                    odd.append((e, loads(d)))
                else:
                    texts.append((e, d.decode()))
                continue
            data = dumps(d)
            if b"\\u0000" in data or not isinstance(d.get("run_id"), str):
                odd.append((e, d))
            else:
                texts.append((e, data.decode()))
        with self.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if texts:
                cur.execute(
                    self._upsert_runs_sql(FROM_TEXT_SQL),
                    ([e for e, _ in texts], [t for _, t in texts]),
                )
            if odd:
                values = ", ".join(f"%s::{t} AS {c}" for c, t in zip(ROW_COLUMNS, ROW_TYPES,
                                                                       strict=True))
                cur.executemany(
                    self._upsert_runs_sql(f"SELECT {values}"),
                    [run_row(e, d) for e, d in odd],
                )
            if delete_runs:
                for table in ("runs", "run_records", "derived"):
                    cur.executemany(
                        self._q(f"DELETE FROM {{s}}.{table} WHERE experiment_id = %s AND run_id = %s"),
                        delete_runs,
                    )
            if derived:
                cur.executemany(
                    self._upsert_derived_sql("VALUES (%s, %s, %s, %s)"),
                    [derived_row(e, r, v) for e, r, v in derived],
                )
            if delete_derived:
                cur.executemany(
                    self._q("DELETE FROM {s}.derived WHERE experiment_id = %s AND run_id = %s"),
                    delete_derived,
                )
            for eid, items in (manifests or {}).items():
                self._replace_manifests(conn, eid, items)
            self._touch(conn, touched)
        # (the one threshold, read where it is defined: tests lower it there)
        if len(runs) + len(delete_runs) >= _pgsync.ANALYZE_AFTER:  # a large catch-up
            self.analyze()

    def _replace_manifests(
        self, conn: psycopg.Connection[Any], eid: str, items: list[tuple[datetime, dict[str, Any]]]
    ) -> None:
        from psycopg.types.json import Jsonb

        conn.execute(self._q("DELETE FROM {s}.experiment_manifests WHERE experiment_id = %s"), (eid,))
        if items:
            conn.cursor().executemany(
                self._q(
                    "INSERT INTO {s}.experiment_manifests (experiment_id, ts, manifest, doc) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (experiment_id, ts) DO UPDATE "
                    "SET manifest = EXCLUDED.manifest, doc = EXCLUDED.doc"
                ),
                [(eid, ts, Jsonb(m, dumps=jsonb_dumps), dumps(m).decode()) for ts, m in items],
            )

    def drop_experiments_except(self, keep: Iterable[str]) -> list[str]:
        """Remove every experiment not in ``keep`` from the index; returns their ids."""
        keep_list = sorted(set(keep))
        with self.connection() as conn, conn.transaction():
            gone = [
                r[0]
                for r in conn.execute(
                    self._q(
                        "SELECT experiment_id FROM {s}.experiments UNION "
                        "SELECT DISTINCT experiment_id FROM {s}.runs"
                    )
                ).fetchall()
                if r[0] not in set(keep_list)
            ]
            for table in ("runs", "run_records", "derived", "experiment_manifests",
                          "field_catalog", "run_table_cache", "experiments"):
                conn.execute(
                    self._q(f"DELETE FROM {{s}}.{table} WHERE experiment_id = ANY(%s)"), (gone,)
                )
        return gone

    # ------------------------------------------------------------ field indexes
    def create_field_index(self, namespace: str, name: str) -> str:
        """Create (if missing) a btree on one numeric params/metrics field; returns its name.

        The index is on ``(experiment_id, <number value of the field>)``, the
        expression the query compiler emits for a numeric comparison that is
        a conjunct of the whole filter, so such filters read only matching
        rows.  Every write of a run updates it (a small cost per index).  The
        value of a metric includes a stored ``"Infinity"`` / ``"-Infinity"``;
        an index made by an earlier metalab on the metric without them is
        dropped (queries no longer use it).

        Raises:
            QueryError: ``namespace`` is not params or metrics.
            IndexUnavailableError / StoreError: as :meth:`connection`.
        """

        from psycopg import sql


        if namespace not in ("params", "metrics"):
            raise QueryError(f"only params and metrics fields can be indexed, not {namespace!r}")
        index_name = field_index_name(namespace, name)
        with self.connection() as conn:
            key = sql.Literal(name).as_string(conn)
            expr = number_sql(namespace, key, namespace == "metrics")
            expr = expr.replace("{", "{{").replace("}", "}}")
            conn.execute(sql.SQL(
                f"CREATE INDEX IF NOT EXISTS {{i}} ON {{s}}.runs (experiment_id, {expr})"
            ).format(i=sql.Identifier(index_name), s=sql.Identifier(self.schema)))
            old = field_index_name(namespace, name, form=1)
            if old != index_name:  # (an index on the earlier expression: unused now)
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {s}.{i}").format(
                    i=sql.Identifier(old), s=sql.Identifier(self.schema)))
            conn.execute(self._q("ANALYZE {s}.runs"))  # statistics of the new expression
        return index_name

    # ------------------------------------------------------------ catalog
    def _recompute_catalog(self, conn: psycopg.Connection[Any], eid: str) -> None:
        conn.execute(self._q("DELETE FROM {s}.field_catalog WHERE experiment_id = %s"), (eid,))
        conn.execute(
            self._q(
                "INSERT INTO {s}.field_catalog (experiment_id, namespace, name, type, count) "
                "SELECT %(e)s, ns, name, type, count(*) FROM ("
                " SELECT 'params' AS ns, k.key AS name, jsonb_typeof(k.value) AS type"
                "  FROM {s}.runs r, jsonb_each(r.params) k WHERE r.experiment_id = %(e)s"
                f" UNION ALL SELECT 'metrics', k.key, {_NUMBER_TYPE}"
                "  FROM {s}.runs r, jsonb_each(r.metrics) k WHERE r.experiment_id = %(e)s"
                f" UNION ALL SELECT 'derived', k.key, {_NUMBER_TYPE}"
                '  FROM {s}.derived d, jsonb_each(d."values") k WHERE d.experiment_id = %(e)s'
                ") f GROUP BY ns, name, type"
            ),
            {"e": eid},
        )
        conn.execute(
            self._q("UPDATE {s}.experiments SET catalog_stale = false WHERE experiment_id = %s"),
            (eid,),
        )

    def field_catalog(self, experiment_id: str, *, fresh: bool = True) -> list[dict[str, Any]]:
        """``[{namespace, name, type, count}]`` of one experiment (exact counts).

        ``fresh=False``: the catalog as last computed, without recomputing it
        after writes (it may lack new names or list names whose runs are gone).
        """
        with self.connection() as conn, conn.transaction():
            row = conn.execute(
                self._q("SELECT catalog_stale FROM {s}.experiments WHERE experiment_id = %s "
                        "FOR UPDATE"),
                (experiment_id,),
            ).fetchone() if fresh else None
            if row is not None and row[0]:
                self._recompute_catalog(conn, experiment_id)
            rows = conn.execute(
                self._q(
                    "SELECT namespace, name, type, count FROM {s}.field_catalog "
                    "WHERE experiment_id = %s ORDER BY namespace, name, type"
                ),
                (experiment_id,),
            ).fetchall()
        return [{"namespace": n, "name": m, "type": t, "count": c} for n, m, t, c in rows]

    def indexed_fields(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The ``(namespace, name)`` of ``keys`` that have an index made by
        :meth:`create_field_index` (looked up by its name; one statement)."""
        if not keys:
            return set()
        names = {field_index_name(ns, name): (ns, name) for ns, name in keys}
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
                (self.schema, list(names)),
            ).fetchall()
        return {names[r[0]] for r in rows}

    def fields_present(self, experiment_id: str | None,
                       keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The ``(namespace, name)`` of ``keys`` that some run has with a non-null
        value (derived values: of a run that exists), in one statement; each
        test stops at the first such run.  ``experiment_id`` None: any experiment.
        """
        if not keys:
            return set()
        scope = "r.experiment_id = %(e)s AND " if experiment_id is not None else ""
        dscope = "d.experiment_id = %(e)s AND " if experiment_id is not None else ""
        text = (
            "SELECT k.ns, k.name FROM unnest(%(ns)s::text[], %(names)s::text[]) AS k(ns, name) "
            "WHERE CASE k.ns "
            f"WHEN 'params' THEN EXISTS (SELECT 1 FROM {{s}}.runs r WHERE {scope}"
            "jsonb_typeof(r.params -> k.name) <> 'null') "
            f"WHEN 'metrics' THEN EXISTS (SELECT 1 FROM {{s}}.runs r WHERE {scope}"
            "jsonb_typeof(r.metrics -> k.name) <> 'null') "
            f"ELSE EXISTS (SELECT 1 FROM {{s}}.derived d WHERE {dscope}"
            "jsonb_typeof(d.\"values\" -> k.name) <> 'null' AND EXISTS (SELECT 1 FROM "
            "{s}.runs r WHERE r.experiment_id = d.experiment_id AND r.run_id = d.run_id)) END"
        )
        with self.connection() as conn:
            rows = conn.execute(self._q(text), {
                "e": experiment_id, "ns": [k[0] for k in keys], "names": [k[1] for k in keys],
            }).fetchall()
        return {(ns, name) for ns, name in rows}

    # ------------------------------------------------------------ reads
    def record_documents(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The stored record documents of ``keys`` (``(experiment_id, run_id)``), one round trip.

        Keys the index does not hold are absent from the answer.
        """
        if not keys:
            return {}
        eids = [k[0] for k in keys]
        rids = [k[1] for k in keys]
        with self.connection() as conn:
            rows = conn.execute(
                self._q(
                    "SELECT m.experiment_id, m.run_id, m.record FROM {s}.run_records m "
                    "JOIN unnest(%s::text[], %s::text[]) AS k(e, r) "
                    "ON m.experiment_id = k.e AND m.run_id = k.r"
                ),
                (eids, rids),
            ).fetchall()
        with gc_paused():
            return {(e, r): loads(rec) for e, r, rec in rows}

    def run_tables(
        self,
        statements: list[tuple[str, list[Any]]],
        decode: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run column queries of ``_pgsql.PgCompiler.table`` on one snapshot; one row each.

        ``decode`` is applied to each row as soon as it arrives (the first
        row is decoded while the server still works on the second).  The
        JSON texts arrive as ``bytes`` (orjson parses them as they are), as
        ``str`` without ``decode``.

        With two statements and a pool of two or more connections the
        second runs at the same time on another connection that imports the
        first one's snapshot (``pg_export_snapshot``): both see the same
        runs, and the server's work is split over two processes.  If no
        second connection is free at once, it runs after the first on the
        same transaction.
        """
        from psycopg import sql

        def prepare(conn: Any) -> None:
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            conn.execute("SET LOCAL work_mem = '64MB'")  # sort the rows in memory

        def fetch(conn: Any, text: str, args: list[Any]) -> tuple[Any, ...] | None:
            # the JSON texts as the bytes received: no UTF-8 decoding into str
            cur = conn.cursor()
            cur.adapters.register_loader("text", texts_as_bytes())
            got = cur.execute(self._q(text), args).fetchone()
            return tuple(got) if got is not None else None

        out: list[tuple[Any, ...] | None] = [None] * len(statements)
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            prepare(conn)
            worker: threading.Thread | None = None
            if len(statements) == 2 and self._max_size >= 2:
                row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                snapshot = row[0] if row else None
                pool = self._get_pool()

                def second() -> None:
                    try:
                        with pool.connection(timeout=0.5) as other, other.transaction():
                            other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                            other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                                sql.Literal(snapshot)))
                            prepare(other)
                            out[1] = fetch(other, *statements[1])
                    except Exception as exc:  # no free connection, or it failed: run it below
                        log.debug("second statement of a load not run in parallel: %s",
                                  self._scrub(str(exc)))
                        out[1] = None

                if snapshot is not None:
                    worker = threading.Thread(target=second, name="metalab-index-read",
                                              daemon=True)
                    worker.start()
            for i, (text, args) in enumerate(statements):
                row_i: tuple[Any, ...] | None = None
                if i == 1 and worker is not None:
                    worker.join()
                    row_i = out[1]
                if row_i is None:
                    row_i = fetch(conn, text, args)
                if row_i is not None:
                    row_i = decode(row_i) if decode is not None else as_text(row_i)
                out[i] = row_i
        return [row if row is not None else () for row in out]

    def page_run_documents(
        self,
        experiment_id: str | None,
        after: tuple[str, str] | None,
        limit: int,
        status: str | None = None,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """One page (keyset on experiment id, run id) of ``(eid, run_id, document)``.

        One round trip per page; only the stored record text is fetched and
        parsed with orjson (measured: joining the page into one JSON value on
        the server is slower, parsing dominates either way).
        """
        conds, args = _run_conditions(experiment_id, status, "m.", "r.")
        if after is not None:
            conds.append("(m.experiment_id, m.run_id) > (%s, %s)")
            args += list(after)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        join = (
            " JOIN {s}.runs r ON r.experiment_id = m.experiment_id AND r.run_id = m.run_id"
            if status is not None else ""
        )
        args.append(limit)
        with self.connection() as conn:
            rows = conn.execute(
                self._q(
                    f"SELECT m.experiment_id, m.run_id, m.record FROM {{s}}.run_records m{join} "
                    f"{where} ORDER BY m.experiment_id, m.run_id LIMIT %s"
                ),
                args,
            ).fetchall()
        return [(e, r, loads(rec)) for e, r, rec in rows]

    def has_runs(self, experiment_id: str | None = None) -> bool:
        """True if the index holds at least one run (of ``experiment_id``); no count."""
        where, args = (
            ("WHERE experiment_id = %s", (experiment_id,)) if experiment_id is not None else ("", ())
        )
        with self.connection() as conn:
            row = conn.execute(
                self._q(f"SELECT EXISTS (SELECT 1 FROM {{s}}.runs {where})"), args
            ).fetchone()
        return bool(row and row[0])

    def count_runs(self, experiment_id: str | None = None, status: str | None = None) -> int:
        conds, args = _run_conditions(experiment_id, status)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        with self.connection() as conn:
            row = conn.execute(self._q(f"SELECT count(*) FROM {{s}}.runs {where}"), args).fetchone()
        return int(row[0]) if row else 0

    def manifests(self, experiment_id: str) -> list[tuple[datetime, dict[str, Any]]]:
        with self.connection() as conn:
            rows = conn.execute(
                self._q("SELECT ts, doc FROM {s}.experiment_manifests WHERE experiment_id = %s "
                        "ORDER BY ts"),
                (experiment_id,),
            ).fetchall()
        return [(ts, loads(doc)) for ts, doc in rows]

    def indexed_experiments(self) -> list[str]:
        with self.connection() as conn:
            rows = conn.execute(
                self._q("SELECT experiment_id FROM {s}.experiments UNION "
                        "SELECT DISTINCT experiment_id FROM {s}.runs ORDER BY 1")
            ).fetchall()
        return [r[0] for r in rows]
