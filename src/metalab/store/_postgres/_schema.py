"""DDL of the PostgreSQL index and its explicit, versioned migrations.

Every identifier is composed with :mod:`psycopg.sql` (the schema name is
user-given and may hold any character); no value is ever formatted into SQL.

Tables (all keyed by experiment, so one experiment can be rebuilt alone):

* ``meta(key, value)``: ``schema_version``.
* ``runs``: one row per run; query columns plus ``record``, the exact JSON
  document of the run record file.
* ``derived``: derived metrics per run.
* ``experiment_manifests``: every manifest with its timestamp.
* ``experiments``: one row per indexed experiment; ``catalog_stale`` marks a
  field catalog that must be recomputed before it is read.
* ``field_catalog``: per experiment, namespace (params / metrics / derived),
  field name, JSON type and the exact number of runs having it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metalab._errors import StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "ensure_schema", "schema_version"]

SCHEMA_VERSION = 1

_V1 = [
    """CREATE TABLE IF NOT EXISTS {s}.runs (
        experiment_id text NOT NULL,
        run_id text NOT NULL,
        status text NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        duration_ms double precision,
        context_fingerprint text NOT NULL DEFAULT '',
        params_fingerprint text NOT NULL DEFAULT '',
        seed_fingerprint text NOT NULL DEFAULT '',
        params jsonb NOT NULL,
        metrics jsonb NOT NULL,
        tags text[] NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (experiment_id, run_id)
    )""",
    "CREATE INDEX IF NOT EXISTS runs_status_idx ON {s}.runs (experiment_id, status)",
    "CREATE INDEX IF NOT EXISTS runs_run_id_idx ON {s}.runs (run_id)",
    "CREATE INDEX IF NOT EXISTS runs_started_idx ON {s}.runs (experiment_id, started_at)",
    """CREATE TABLE IF NOT EXISTS {s}.derived (
        experiment_id text NOT NULL,
        run_id text NOT NULL,
        "values" jsonb NOT NULL,
        doc text NOT NULL,
        PRIMARY KEY (experiment_id, run_id)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.experiment_manifests (
        experiment_id text NOT NULL,
        ts timestamptz NOT NULL,
        manifest jsonb NOT NULL,
        doc text NOT NULL,
        PRIMARY KEY (experiment_id, ts)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.experiments (
        experiment_id text PRIMARY KEY,
        catalog_stale boolean NOT NULL DEFAULT true,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.field_catalog (
        experiment_id text NOT NULL,
        namespace text NOT NULL,
        name text NOT NULL,
        type text NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (experiment_id, namespace, name, type)
    )""",
]

#: version -> statements that bring the schema from version-1 to version
MIGRATIONS: dict[int, list[str]] = {1: _V1}


def _compose(stmt: str, schema: str) -> Any:
    from psycopg import sql

    return sql.SQL(stmt).format(s=sql.Identifier(schema))


def schema_version(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The index schema version in ``schema``, or ``None`` if there is no index."""
    row = conn.execute(
        "SELECT to_regclass(format('%%I.meta', %s::text)) IS NOT NULL", (schema,)
    ).fetchone()
    if not row or not row[0]:
        return None
    from psycopg import sql

    got = conn.execute(
        sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(
            sql.Identifier(schema)
        )
    ).fetchone()
    return int(got[0]) if got else None


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Create or migrate the index tables in ``schema``; returns True if created now.

    Runs in one transaction under an advisory lock, so concurrent processes
    migrate once.  ``conn`` must not be inside a transaction.

    Raises:
        StoreError: the schema was made by a newer metalab.
    """
    from psycopg import sql

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("metalab-index:" + schema,))
        current = schema_version(conn, schema)
        if current is not None and current > SCHEMA_VERSION:
            raise StoreError(
                f"the index in schema {schema!r} has version {current}, newer than this metalab "
                f"understands ({SCHEMA_VERSION}); upgrade metalab"
            )
        if current == SCHEMA_VERSION:
            return False
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            _compose("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text)", schema)
        )
        for version in range((current or 0) + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[version]:
                conn.execute(_compose(stmt, schema))
        conn.execute(
            _compose(
                "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                schema,
            ),
            (str(SCHEMA_VERSION),),
        )
        return current is None
