"""Run lifecycle events and their delivery to user callbacks."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metalab._internal._time import utcnow
from metalab.model import ErrorInfo

__all__ = ["Event", "EventCallback", "EventDispatcher", "EventKind"]

log = logging.getLogger("metalab.execution")


class EventKind(enum.StrEnum):
    """What happened to a run."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_SKIPPED = "run_skipped"


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle event of one run.

    ``duration_ms`` and ``metrics`` are set for finished runs, ``error`` for
    failed ones (and cancelled ones when an exception stopped them),
    ``reason`` for skipped runs and for runs cancelled before they started.
    """

    kind: EventKind
    run_id: str
    experiment_id: str
    timestamp: datetime = field(default_factory=utcnow)
    duration_ms: float | None = None
    metrics: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    reason: str | None = None


EventCallback = Callable[[Event], None]


class EventDispatcher:
    """Deliver events to several callbacks, one event at a time.

    Thread-safe: events emitted from several threads are delivered one after
    the other (in the order :meth:`emit` acquires the lock, i.e. completion
    order).  A callback that raises is logged and never stops a run.
    """

    def __init__(self, callbacks: list[EventCallback] | None = None) -> None:
        self._callbacks: list[EventCallback] = list(callbacks or [])
        self._lock = threading.RLock()

    @property
    def active(self) -> bool:
        """True if any callback listens (emitters may skip building events otherwise)."""
        return bool(self._callbacks)

    def add(self, callback: EventCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def emit(self, event: Event) -> None:
        with self._lock:
            for cb in self._callbacks:
                try:
                    cb(event)
                except Exception:
                    log.exception(
                        "event callback %r raised on %s of run %s (ignored)",
                        cb,
                        event.kind.value,
                        event.run_id,
                    )
