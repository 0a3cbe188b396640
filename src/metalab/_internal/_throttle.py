"""A warning that repeats at most once per interval (not one log line per run or batch)."""

from __future__ import annotations

import threading
import time

__all__ = ["Throttle"]


class Throttle:
    """``ready()`` is True at most once per ``interval`` seconds (the first call: True).

    Thread-safe: of several threads calling at once, one gets True.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Whether the caller may speak now (and, if so, the interval starts again)."""
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last <= self.interval:
                return False
            self._last = now
            return True
