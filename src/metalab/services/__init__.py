"""Helpers that run services metalab can use (a local PostgreSQL server)."""

from metalab.services._pgserver import (
    PostgresServerError,
    ServerInfo,
    find_pg_binary,
    server_status,
    start_server,
    stop_server,
)

__all__ = [
    "PostgresServerError",
    "ServerInfo",
    "find_pg_binary",
    "server_status",
    "start_server",
    "stop_server",
]
