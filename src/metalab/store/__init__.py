"""Where results live.

``FileStore`` (files, the source of truth) is built in; ``PostgresStore`` (a
rebuildable PostgreSQL query index over a FileStore) loads on first use and
needs the ``postgres`` extra.
"""

from __future__ import annotations

from typing import Any

from metalab._errors import ReadOnlyStoreError
from metalab._internal._names import safe_experiment_id
from metalab.store._annotations import Annotations
from metalab.store._base import WRITE_METHODS, ErrorCallback, Progress, Store
from metalab.store._config import ConfigRegistry, StoreConfig
from metalab.store._factory import (
    DEFAULT_STORE_ROOT,
    StoreLike,
    create_store,
    make_config,
    make_store,
    narrow_to_experiment,
    parse_to_config,
    require_experiment,
)
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store._series import LiveSeries, LiveSeriesWriter
from metalab.store._transfer import TransferReport, export_store
from metalab.store.locator import LocatorInfo, parse_locator

__all__ = [
    "DEFAULT_STORE_ROOT",
    "WRITE_METHODS",
    "Annotations",
    "ConfigRegistry",
    "ErrorCallback",
    "FileStore",
    "FileStoreConfig",
    "LiveSeries",
    "LiveSeriesWriter",
    "LocatorInfo",
    "PostgresStore",
    "PostgresStoreConfig",
    "Progress",
    "ReadOnlyStoreError",
    "Store",
    "StoreConfig",
    "StoreLike",
    "TransferReport",
    "create_store",
    "export_store",
    "make_config",
    "make_store",
    "narrow_to_experiment",
    "parse_locator",
    "parse_to_config",
    "require_experiment",
    "safe_experiment_id",
]

_LAZY = frozenset({"PostgresStore", "PostgresStoreConfig"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from metalab._errors import MissingDependencyError

        try:
            from metalab.store import _postgres
        except ImportError as exc:
            raise MissingDependencyError("psycopg", "postgres", name) from exc
        return getattr(_postgres, name)
    raise AttributeError(f"module 'metalab.store' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
