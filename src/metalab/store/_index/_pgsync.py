"""Whole-experiment syncs of a PostgreSQL index: binary COPY, bulk loads, planner statistics.

A mixin of :class:`~metalab.store._index._postgres.PostgresIndex` (the SQL
side of a PostgresStore; no file access here).  :meth:`PostgresSync.sync_experiment`
makes the index of one experiment equal to a stream of run documents: a
first index (no row in the run tables at all) is bulk-loaded as
``pg_restore`` does (tables emptied and locked, loaded without indexes, rows
frozen, indexes built after), an experiment without rows is copied straight
into the index tables, any other is copied into temporary tables and merged.
A sync or batch that changes many rows refreshes the planner statistics.

Every identifier is composed with :mod:`psycopg.sql`; every value is a bound
parameter or a COPY row.  Thread safety: as ``PostgresIndex`` (one pooled
connection per call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._internal._gc import gc_paused
from metalab.store._index._pgconnect import psycopg_module
from metalab.store._index._rows import (
    DERIVED_TYPES,
    RUN_COLUMNS,
    RUN_TYPES,
    derived_row,
    run_row,
)

if TYPE_CHECKING:
    import contextlib

    import psycopg

__all__ = ["ANALYZE_AFTER", "PostgresSync"]

#: a sync or batch that changes at least this many rows refreshes the planner
#: statistics (ANALYZE) afterwards
ANALYZE_AFTER = 10_000
#: rows per COPY chunk when a rebuild streams into runs and run_records (fewer
#: chunks: fewer waits for the server to drain a COPY; measured 5k vs 20k)
_COPY_CHUNK = 20_000
#: runs between two progress reports of a sync
PROGRESS_EVERY = 1000


@dataclasses.dataclass(frozen=True)
class _SyncTarget:
    """The tables a sync copies into (SQL identifiers) and how."""

    runs: Any
    records: Any
    derived: Any
    #: ``, FREEZE`` for a bulk load into tables emptied in the same transaction
    freeze: Any
    #: the index definitions to create again after a bulk load
    recreate: list[Any]
    #: the index tables themselves (else temporary tables, merged afterwards)
    direct: bool


class PostgresSync:
    """Whole-experiment syncs and planner statistics (see the module docstring)."""

    if TYPE_CHECKING:  # provided by PostgresIndex
        schema: str

        def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]: ...
        def _q(self, text: str) -> Any: ...
        def _upsert_runs_sql(self, source: str) -> Any: ...
        def _upsert_derived_sql(self, source: str) -> Any: ...
        def _touch(self, conn: psycopg.Connection[Any], experiment_ids: Iterable[str]) -> None: ...
        def _replace_manifests(self, conn: psycopg.Connection[Any], eid: str,
                               items: list[tuple[datetime, dict[str, Any]]]) -> None: ...

    def sync_experiment(
        self,
        experiment_id: str,
        docs: Iterable[dict[str, Any]],
        derived_of: Callable[[str], dict[str, Any] | None],
        manifests: list[tuple[datetime, dict[str, Any]]],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Make the index of one experiment equal to ``docs`` (+ derived, manifests).

        An experiment with no rows in the index yet (first index, rebuild
        after a dropped schema) is streamed with binary COPY straight into the
        index tables.  Otherwise the documents are streamed into temporary
        tables, then in the same transaction rows that are gone are deleted
        and rows that changed are upserted.  Rows of other experiments are
        not touched.  All or nothing: an interrupted sync leaves the previous
        index state.  The field catalog is marked stale and recomputed on its
        next read.  A run id met twice (a record file copied under another
        name) is indexed once.  Returns the number of runs indexed.

        Bulk load: when the three run tables hold no row at all (a first index,
        a rebuild after a dropped schema), they are locked exclusively,
        emptied in the transaction (so COPY can ``FREEZE`` the rows) and
        loaded without their indexes, which are built after the rows (field
        indexes included), as ``pg_restore`` does.
        """
        with self.connection() as conn:
            # looked at outside the transaction: no lock is kept by this look.
            # Dropping indexes needs to own the tables (a user granted only
            # reads and writes takes the ordinary path)
            maybe_empty = self._tables_empty(conn, None) and self._owns_tables(conn)
            with conn.transaction():
                cur = conn.cursor()
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"metalab-sync:{self.schema}:{experiment_id}",),
                )
                if maybe_empty:
                    # the first statement on these tables: concurrent syncs queue
                    # here in the same order.  A writer taking the tables in
                    # another order may deadlock with it: in a savepoint, so the
                    # loser here falls back to the ordinary path
                    try:
                        with conn.transaction():
                            cur.execute(self._q(
                                "LOCK TABLE {s}.runs, {s}.run_records, {s}.derived "
                                "IN ACCESS EXCLUSIVE MODE"
                            ))
                    except psycopg_module().errors.DeadlockDetected:
                        maybe_empty = False
                bulk = maybe_empty and self._tables_empty(conn, None)
                count, analyze = self._sync_locked(
                    conn, cur, experiment_id, docs, derived_of, manifests, progress, bulk
                )
            if analyze:
                self._analyze(conn)
        if progress is not None:
            progress(count)
        return count

    def _tables_empty(self, conn: psycopg.Connection[Any], experiment_id: str | None) -> bool:
        """True if runs, run_records and derived hold no row (of ``experiment_id``)."""
        where = "" if experiment_id is None else " WHERE experiment_id = %(e)s"
        row = conn.execute(
            self._q(
                f"SELECT NOT EXISTS (SELECT 1 FROM {{s}}.runs{where}) "
                f"AND NOT EXISTS (SELECT 1 FROM {{s}}.run_records{where}) "
                f"AND NOT EXISTS (SELECT 1 FROM {{s}}.derived{where})"
            ),
            {"e": experiment_id},
        ).fetchone()
        return bool(row and row[0])

    def _owns_tables(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT count(*) = 3 AND bool_and(pg_has_role(c.relowner, 'USAGE')) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname IN ('runs', 'run_records', 'derived')",
            (self.schema,),
        ).fetchone()
        return bool(row and row[0])

    def _drop_indexes(self, cur: Any) -> list[Any]:
        """Bulk load: drop the indexes of the (empty, locked) tables; returns the
        statements that recreate them (field indexes included).

        Loading first and indexing after is what ``pg_restore`` does: one sort
        per index instead of a btree insertion per row and index.  The
        definitions are the server's own (``pg_get_indexdef``), identifiers
        quoted by the server; names we compose are quoted with psycopg.sql.
        """
        from psycopg import sql

        rows = cur.execute(
            "SELECT c.relname, i.relname, pg_get_indexdef(x.indexrelid), con.conname, "
            "pg_get_constraintdef(con.oid) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class c ON c.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid "
            "AND con.conrelid = c.oid "
            "WHERE n.nspname = %s AND c.relname IN ('runs', 'run_records', 'derived') "
            "ORDER BY c.relname, con.conname IS NULL, i.relname",
            (self.schema,),
        ).fetchall()
        recreate: list[Any] = []
        for table, index, indexdef, conname, condef in rows:
            tbl = sql.Identifier(self.schema, table)
            if conname is not None:
                cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    tbl, sql.Identifier(conname)))
                recreate.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                    tbl, sql.Identifier(conname)) + sql.SQL(condef))
            else:
                cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(self.schema, index)))
                recreate.append(sql.SQL(indexdef))
        return recreate

    def _sync_locked(
        self,
        conn: psycopg.Connection[Any],
        cur: Any,
        experiment_id: str,
        docs: Iterable[dict[str, Any]],
        derived_of: Callable[[str], dict[str, Any] | None],
        manifests: list[tuple[datetime, dict[str, Any]]],
        progress: Callable[[int], None] | None,
        bulk: bool,
    ) -> tuple[int, bool]:
        """The body of :meth:`sync_experiment` (inside its transaction)."""
        target = self._sync_target(conn, cur, experiment_id, bulk)
        run_ids = self._copy_runs(cur, target, experiment_id, docs, progress)
        self._copy_derived(cur, target, experiment_id, run_ids, derived_of)
        for stmt in target.recreate:  # bulk load: the indexes, built once over the rows
            cur.execute(stmt)
        self._replace_manifests(conn, experiment_id, manifests)
        self._touch(conn, [experiment_id])  # marks the field catalog stale
        count = len(run_ids)
        if target.direct:
            analyze = count >= ANALYZE_AFTER
        else:
            analyze = self._merge_synced(cur, experiment_id) >= ANALYZE_AFTER
        return count, analyze

    def _sync_target(self, conn: psycopg.Connection[Any], cur: Any, experiment_id: str,
                     bulk: bool) -> _SyncTarget:
        """Where a sync copies its rows: the index tables themselves when they hold
        none of the experiment's rows (``bulk``: emptied here, loaded without
        indexes, rows frozen), else temporary tables merged afterwards."""
        from psycopg import sql

        recreate: list[Any] = []
        freeze = sql.SQL("")
        if bulk:
            # empty tables under an exclusive lock: emptied in this transaction
            # (so COPY may FREEZE the rows) and loaded without indexes
            cur.execute(self._q("TRUNCATE {s}.runs, {s}.run_records, {s}.derived"))
            # every cached load answer described the rows just removed.  DELETE,
            # not TRUNCATE: a concurrent load reading the cache holds a lock
            # TRUNCATE would wait for while that load waits for ``runs``
            cur.execute(self._q("DELETE FROM {s}.run_table_cache"))
            recreate = self._drop_indexes(cur)
            freeze = sql.SQL(", FREEZE")
        if bulk or self._tables_empty(conn, experiment_id):
            return _SyncTarget(self._q("{s}.runs"), self._q("{s}.run_records"),
                               self._q("{s}.derived"), freeze, recreate, direct=True)
        for temp, table in (("_ml_runs", "runs"), ("_ml_records", "run_records"),
                            ("_ml_derived", "derived")):
            cur.execute(self._q(
                f"CREATE TEMP TABLE {temp} (LIKE {{s}}.{table} INCLUDING DEFAULTS) ON COMMIT DROP"
            ))
        return _SyncTarget(sql.SQL("_ml_runs"), sql.SQL("_ml_records"), sql.SQL("_ml_derived"),
                           freeze, recreate, direct=False)

    def _copy_runs(self, cur: Any, target: _SyncTarget, experiment_id: str,
                   docs: Iterable[dict[str, Any]], progress: Callable[[int], None] | None
                   ) -> list[str]:
        """COPY the rows of ``docs`` (the first of each run id) into ``target``;
        returns the run ids copied, in order."""
        from psycopg import sql

        run_ids: list[str] = []
        seen: set[str] = set()
        copy_runs = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY{})").format(
            target.runs, sql.SQL(", ".join(RUN_COLUMNS)), target.freeze)
        copy_records = sql.SQL(
            "COPY {} (experiment_id, run_id, record) FROM STDIN (FORMAT BINARY{})"
        ).format(target.records, target.freeze)
        chunk: list[tuple[Any, ...]] = []

        def flush() -> None:
            # one COPY per table and chunk (a connection runs one COPY at a time)
            with cur.copy(copy_runs) as cp:
                cp.set_types(list(RUN_TYPES))
                for row in chunk:
                    cp.write_row(row[:-1])
            with cur.copy(copy_records) as cp:
                cp.set_types(["text", "text", "text"])
                for row in chunk:
                    cp.write_row((row[0], row[1], row[-1]))
            chunk.clear()

        with gc_paused():  # the documents hold no cycles; see _internal._gc
            for doc in docs:
                row = run_row(experiment_id, doc)
                if not row[1] or row[1] in seen:
                    continue
                seen.add(row[1])
                chunk.append(row)
                run_ids.append(row[1])
                if len(chunk) >= _COPY_CHUNK:
                    flush()
                if progress is not None and len(run_ids) % PROGRESS_EVERY == 0:
                    progress(len(run_ids))
            if chunk:
                flush()
        return run_ids

    @staticmethod
    def _copy_derived(cur: Any, target: _SyncTarget, experiment_id: str, run_ids: list[str],
                      derived_of: Callable[[str], dict[str, Any] | None]) -> None:
        """COPY the derived values of ``run_ids`` (those that have some) into ``target``."""
        from psycopg import sql

        with cur.copy(
            sql.SQL(
                'COPY {} (experiment_id, run_id, "values", doc) FROM STDIN (FORMAT BINARY{})'
            ).format(target.derived, target.freeze)
        ) as cp:
            cp.set_types(list(DERIVED_TYPES))
            for rid in run_ids:
                values = derived_of(rid)
                if values is not None:
                    cp.write_row(derived_row(experiment_id, rid, values))

    def analyze(self) -> None:
        """Refresh the planner statistics of the index tables (after bulk changes).

        Without them the planner misjudges a freshly filled table (e.g. plans
        no parallel scan over a million rows).
        """
        with self.connection() as conn:
            self._analyze(conn)

    def _analyze(self, conn: psycopg.Connection[Any]) -> None:
        # run_records is only read by primary key.  The whole-document JSONB
        # columns are left out: queries compare fields (``params -> key``),
        # which their statistics do not describe, and they cost about half
        # of the ANALYZE.  A column list skips the statistics of expression
        # indexes (field indexes), so with one of those the table is analysed whole.
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = "
            "to_regclass(format('%%I.runs', %s::text)) AND indexprs IS NOT NULL)",
            (self.schema,),
        ).fetchone()
        runs_cols = "" if row and row[0] else " ({})".format(
            ", ".join(c for c in RUN_COLUMNS if c not in ("params", "metrics")))
        conn.execute(self._q(
            f"ANALYZE {{s}}.runs{runs_cols}, {{s}}.derived (experiment_id, run_id)"))

    def _merge_synced(self, cur: Any, experiment_id: str) -> int:
        """Make the experiment's rows equal to the temp tables; returns rows changed."""
        changed = 0
        for table, tmp in (("runs", "_ml_runs"), ("run_records", "_ml_records"),
                           ("derived", "_ml_derived")):
            cur.execute(
                self._q(
                    f"DELETE FROM {{s}}.{table} t WHERE t.experiment_id = %s AND NOT EXISTS "
                    f"(SELECT 1 FROM {tmp} n WHERE n.run_id = t.run_id)"
                ),
                (experiment_id,),
            )
            changed += max(cur.rowcount, 0)
        sel = ", ".join(f"n.{c}" for c in RUN_COLUMNS)
        cur.execute(self._upsert_runs_sql(
            f"SELECT DISTINCT ON (n.run_id) {sel}, m.record FROM _ml_runs n "
            "JOIN _ml_records m ON m.run_id = n.run_id ORDER BY n.run_id"
        ))
        changed += max(cur.rowcount, 0)
        cur.execute(self._upsert_derived_sql(
            'SELECT DISTINCT ON (run_id) experiment_id, run_id, "values", doc '
            "FROM _ml_derived ORDER BY run_id"
        ))
        changed += max(cur.rowcount, 0)
        return changed
