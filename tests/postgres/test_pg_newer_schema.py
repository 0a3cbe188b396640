"""An index whose schema a newer metalab wrote: catch-up, reconcile and rebuild refuse
with a StoreError that says what to do (also when the newer metalab migrated the
schema while this process was connected), nothing is written into it, the changes
stay in the catch-up journal and reads answer from the files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pg_helpers import index_rows, records
from psycopg import sql

import metalab
from metalab.store import PostgresStore
from metalab.store._postgres._schema import SCHEMA_VERSION

NEWER = 99


def _set_version(conn: psycopg.Connection[Any], schema: str, version: str) -> None:
    conn.execute(sql.SQL("UPDATE {}.meta SET value = %s WHERE key = 'schema_version'").format(
        sql.Identifier(schema)), (version,))


def _indexed(make_store: Callable[..., PostgresStore], n: int) -> PostgresStore:
    """A store of ``exp:1`` whose ``n`` runs are in the index."""
    store = make_store("exp:1")
    for r in records("exp:1", n):
        store.put_run_record(r)
    assert store.flush() and not store.index_is_behind()
    return store


def _write_deferred(make_store: Callable[..., PostgresStore], n: int, start: int) -> None:
    """``n`` more runs written while the index is not updated (their marks in the journal)."""
    deferred = make_store("exp:1", index_mode="deferred")
    for r in records("exp:1", n, start=start):
        deferred.put_run_record(r)


def _refusals(store: PostgresStore) -> list[str]:
    """The messages of catch_up, reconcile and rebuild_index (each must raise)."""
    out = []
    for call in (store.catch_up, store.reconcile, lambda: store.reconcile(full=True),
                 store.rebuild_index):
        with pytest.raises(metalab.StoreError) as info:
            call()
        out.append(str(info.value))
    return out


@pytest.mark.parametrize("connected", [False, True], ids=["first-contact", "while-connected"])
def test_a_newer_schema_is_refused_and_left_untouched(
        make_store: Callable[..., PostgresStore], pg_conn: psycopg.Connection[Any],
        pg_schema: str, connected: bool) -> None:
    first = _indexed(make_store, 3)
    # ``connected``: the store has used the index (its schema checked) before a
    # newer metalab migrates it; else it meets the newer schema on its first call
    store = first if connected else make_store("exp:1")
    indexed = index_rows(pg_conn, pg_schema)
    _set_version(pg_conn, pg_schema, str(NEWER))
    _write_deferred(make_store, 2, start=3)
    assert store.index_is_behind()
    for message in _refusals(store):
        assert f"version {NEWER}" in message and "upgrade metalab" in message, message
    assert index_rows(pg_conn, pg_schema) == indexed  # nothing written into it
    assert store.index_is_behind()  # the marks stay for the upgraded metalab
    assert len(store.query_runs()) == 5  # from the files
    assert len(metalab.load_results(store)) == 5


def test_an_unreadable_schema_version_is_named(
        make_store: Callable[..., PostgresStore], pg_conn: psycopg.Connection[Any],
        pg_schema: str) -> None:
    store = _indexed(make_store, 1)
    _set_version(pg_conn, pg_schema, "4.beta")
    with pytest.raises(metalab.StoreError, match=r"schema_version '4\.beta'"):
        store.reconcile()
    with pytest.raises(metalab.StoreError, match=r"schema_version '4\.beta'"):
        make_store("exp:1").catch_up()


def test_catch_up_continues_once_the_schema_is_back_to_this_version(
        make_store: Callable[..., PostgresStore], pg_conn: psycopg.Connection[Any],
        pg_schema: str) -> None:
    store = _indexed(make_store, 1)
    _set_version(pg_conn, pg_schema, str(NEWER))
    _write_deferred(make_store, 2, start=1)
    with pytest.raises(metalab.StoreError):
        store.catch_up()
    _set_version(pg_conn, pg_schema, str(SCHEMA_VERSION))
    assert store.catch_up() >= 2
    assert not store.index_is_behind()
    assert len(index_rows(pg_conn, pg_schema, "exp:1")) == 3
