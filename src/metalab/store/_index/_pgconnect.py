"""Connecting to PostgreSQL: the driver import, the circuit breaker, text loaders, passwords.

See :mod:`._postgres` for how the index uses them.  Thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from metalab._errors import MissingDependencyError
from metalab.store._postgres._config import conninfo_params

__all__ = ["CircuitBreaker", "as_text", "breaker_for", "password_of", "psycopg_module",
           "texts_as_bytes"]


def psycopg_module() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("psycopg", "postgres", "The PostgreSQL store") from exc
    return psycopg



class CircuitBreaker:
    """Back-off after connection failures (one per target and process).

    ``base`` seconds after the first failure, doubling per further failure,
    at most ``cap`` seconds.  Thread-safe.
    """

    base: float = 1.0
    cap: float = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.open_until = 0.0
        self.last_error = ""

    def allow(self) -> bool:
        return time.monotonic() >= self.open_until

    def retry_in(self) -> float:
        return max(0.0, self.open_until - time.monotonic())

    def failure(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            delay = min(self.base * 2 ** (self.failures - 1), self.cap)
            self.open_until = time.monotonic() + delay
            self.last_error = message

    def success(self) -> bool:
        """Record a success; True if the breaker had been open (recovery)."""
        with self._lock:
            recovered = self.failures > 0
            self.failures = 0
            self.open_until = 0.0
            return recovered

    def reset(self) -> None:
        self.success()


_BREAKERS: dict[tuple[int, str], CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(key: str) -> CircuitBreaker:
    with _BREAKERS_LOCK:
        k = (os.getpid(), key)
        found = _BREAKERS.get(k)
        if found is None:
            found = _BREAKERS[k] = CircuitBreaker()
        return found


def texts_as_bytes() -> type:
    """A psycopg loader of ``text`` values as ``bytes`` (made on first use)."""
    global _BYTES_LOADER
    if _BYTES_LOADER is None:
        from psycopg.adapt import Loader

        class TextAsBytes(Loader):
            def load(self, data: Any) -> bytes:
                return bytes(data)

        _BYTES_LOADER = TextAsBytes
    return _BYTES_LOADER


_BYTES_LOADER: type | None = None


def as_text(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with its byte values (JSON texts) as ``str``."""
    return tuple(bytes(v).decode() if isinstance(v, bytes | memoryview) else v for v in row)


def password_of(conninfo: str) -> str | None:
    if "://" in conninfo:
        from urllib.parse import unquote, urlsplit

        with contextlib.suppress(ValueError):
            pw = urlsplit(conninfo).password
            if pw:
                return unquote(pw)
    return conninfo_params(conninfo).get("password") or None
