"""Session-wide fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a real PostgreSQL server for the whole test session.

    ``METALAB_TEST_PG_URL`` names an existing server (e.g. in CI); otherwise a
    throwaway server is started from the machine's PostgreSQL binaries with
    :mod:`metalab.services` and stopped at the end.  Missing binaries FAIL the
    tests that need the server (they are never skipped).
    """
    url = os.environ.get("METALAB_TEST_PG_URL")
    if url:
        yield url
        return
    from metalab.services import PostgresServerError, find_pg_binary, start_server, stop_server

    try:
        find_pg_binary("initdb")
        find_pg_binary("pg_ctl")
    except PostgresServerError as exc:
        pytest.fail(
            f"the PostgreSQL tests need a server: {exc}. Or point METALAB_TEST_PG_URL at a "
            "running server (postgresql://user@host:port/db)",
            pytrace=False,
        )
    folder = tempfile.mkdtemp(prefix="metalab-pgtest-")
    info = start_server(folder, fast=True)
    try:
        yield info.url
    finally:
        stop_server(folder, mode="immediate", remove=True)
