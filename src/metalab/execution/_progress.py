"""A rich progress bar driven by run events (rich is imported lazily)."""

from __future__ import annotations

import math
import threading
from typing import Any

from metalab._errors import MissingDependencyError
from metalab.execution._events import Event, EventKind

__all__ = ["ProgressDisplay"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


class ProgressDisplay:
    """Bar with done/total, ok/failed/running/skipped counters, ETA and the latest metrics.

    Use as an event callback (:meth:`__call__`); :meth:`stop` ends the display.
    Thread-safe.
    """

    def __init__(self, title: str, total: int, max_metrics: int = 4) -> None:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError as exc:  # pragma: no cover - rich is a core dependency
            raise MissingDependencyError("rich", "all", "progress=True") from exc
        self._lock = threading.Lock()
        self._max_metrics = max_metrics
        self._counts = {"ok": 0, "failed": 0, "cancelled": 0, "skipped": 0}
        self._running: set[str] = set()
        self._latest = ""
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[latest]}"),
            transient=False,
        )
        self._task = self._progress.add_task(title, total=total, counts=self._counts_text(), latest="")
        self._progress.start()
        self._stopped = False

    def _counts_text(self) -> str:
        c = self._counts
        text = f"[green]ok {c['ok']}[/] [red]failed {c['failed']}[/] running {len(self._running)}"
        if c["skipped"]:
            text += f" skipped {c['skipped']}"
        if c["cancelled"]:
            text += f" [yellow]cancelled {c['cancelled']}[/]"
        return text

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._stopped:
                return
            advance = 1
            if event.kind is EventKind.RUN_STARTED:
                self._running.add(event.run_id)
                advance = 0
            else:
                self._running.discard(event.run_id)
                key = {
                    EventKind.RUN_FINISHED: "ok",
                    EventKind.RUN_FAILED: "failed",
                    EventKind.RUN_CANCELLED: "cancelled",
                    EventKind.RUN_SKIPPED: "skipped",
                }[event.kind]
                self._counts[key] += 1
                if event.kind is EventKind.RUN_FINISHED and event.metrics:
                    items = list(event.metrics.items())[: self._max_metrics]
                    self._latest = " ".join(f"{k}={_fmt(v)}" for k, v in items)
            self._progress.update(
                self._task, advance=advance, counts=self._counts_text(), latest=self._latest
            )

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._progress.refresh()
            self._progress.stop()
