"""PostgresStore: a FileStore (source of truth) plus a rebuildable PostgreSQL index.

Importing this package needs no PostgreSQL driver (``psycopg`` is imported
when the index is first used), so the config class is always registered for
the ``postgresql://`` and ``postgres://`` schemes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metalab.store._postgres._config import INDEX_MODES, PostgresStoreConfig

if TYPE_CHECKING:
    from metalab.store._index._postgres import PostgresIndex
    from metalab.store._postgres._store import PostgresStore

__all__ = ["INDEX_MODES", "PostgresIndex", "PostgresStore", "PostgresStoreConfig"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from metalab.store._postgres._store import PostgresStore

        return PostgresStore
    if name == "PostgresIndex":
        from metalab.store._index._postgres import PostgresIndex

        return PostgresIndex
    raise AttributeError(f"module 'metalab.store._postgres' has no attribute {name!r}")
