"""Progress of a submission, driven by run events: a rich bar on a terminal, log lines elsewhere.

:func:`progress_reporter` decides, once per submission: ``progress=True`` is
the bar, ``False`` nothing, ``None`` (the default of :func:`metalab.run`) the
bar when both stdout and stderr are terminals, else :class:`ProgressLog`
(lines on the ``metalab.progress`` logger, seen when logging is
configured).  Both report each failed run as it happens (its id and the
first line of its error, never a traceback), the first
:data:`MAX_FAILURES_SHOWN` of a submission; the rest are counted (and the
end-of-submission summary names the first one).  rich is imported lazily.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from metalab._errors import MissingDependencyError
from metalab.execution._events import Event, EventKind

__all__ = [
    "MAX_FAILURES_SHOWN",
    "PROGRESS_LOG_INTERVAL_S",
    "ProgressDisplay",
    "ProgressLog",
    "progress_reporter",
]

#: failed runs of one submission reported one by one (the others are counted)
MAX_FAILURES_SHOWN = 10
#: seconds between two progress lines in logs (a line is written at the next event after it)
PROGRESS_LOG_INTERVAL_S = 30.0

progress_log = logging.getLogger("metalab.progress")

_COUNTED = {
    EventKind.RUN_FINISHED: "ok",
    EventKind.RUN_FAILED: "failed",
    EventKind.RUN_CANCELLED: "cancelled",
    EventKind.RUN_SKIPPED: "skipped",
}


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # a replaced or closed stream
        return False


def on_terminal() -> bool:
    """True if both stdout and stderr are terminals (where a live bar can be drawn)."""
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def progress_reporter(
    progress: bool | None, title: str, total: int, *, log_lines: bool = True
) -> tuple[Callable[[Event], None], Callable[[], None]] | None:
    """``(event callback, stop)`` of the reporter ``progress`` asks for, or None.

    ``True``: the rich bar.  ``False``: None.  ``None``: the bar on a
    terminal (:func:`on_terminal`), else :class:`ProgressLog` (None with
    ``log_lines=False``: a launcher whose events cost a poller of their own).

    Raises:
        ValidationError: ``progress`` is not True, False or None.
    """
    if progress is not None and not isinstance(progress, bool):
        from metalab._errors import ValidationError

        raise ValidationError(
            f"progress must be True, False or None (a bar on a terminal), got {progress!r}"
        )
    if progress is False:
        return None
    if progress or on_terminal():
        display = ProgressDisplay(title, total)
        return display, display.stop
    if not log_lines:
        return None
    log_ = ProgressLog(title, total)
    return log_, log_.stop


def _failure_text(event: Event) -> str:
    """``Type: first line of the message`` of a failed run's event."""
    error = event.error
    if error is None:
        return event.reason or "failed"
    lines = (error.message or "").strip().splitlines()
    return f"{error.type}: {lines[0]}" if lines else error.type


class _Counts:
    """Done/ok/failed/running/skipped counts of one submission, and which failures to show."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.counts = {"ok": 0, "failed": 0, "cancelled": 0, "skipped": 0}
        self.running: set[str] = set()
        self.started = time.monotonic()

    def count(self, event: Event) -> bool:
        """Count ``event``; True if it is a failure to report one by one."""
        if event.kind is EventKind.RUN_STARTED:
            self.running.add(event.run_id)
            return False
        self.running.discard(event.run_id)
        key = _COUNTED[event.kind]
        self.counts[key] += 1
        return key == "failed" and self.counts["failed"] <= MAX_FAILURES_SHOWN

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        c = self.counts
        elapsed = time.monotonic() - self.started
        text = (f"{self.done}/{self.total} done (ok {c['ok']}, failed {c['failed']}, "
                f"running {len(self.running)}")
        if c["skipped"]:
            text += f", skipped {c['skipped']}"
        if c["cancelled"]:
            text += f", cancelled {c['cancelled']}"
        text += f"), {_clock(elapsed)} elapsed"
        executed = self.done - c["skipped"]
        left = self.total - self.done
        if executed and left:
            text += f", eta {_clock(elapsed / executed * left)}"
        return text


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressLog:
    """Progress as log lines on the ``metalab.progress`` logger (for logs, not terminals).

    An INFO line with the counts at the first event after every
    :data:`PROGRESS_LOG_INTERVAL_S` seconds and one when the submission ends;
    a WARNING per failed run as it happens (the first
    :data:`MAX_FAILURES_SHOWN`).  Use as an event callback; thread-safe.
    """

    def __init__(self, title: str, total: int, interval: float = PROGRESS_LOG_INTERVAL_S) -> None:
        self._lock = threading.Lock()
        self._title = title
        self._state = _Counts(total)
        self._interval = interval
        self._last = time.monotonic()
        self._stopped = False

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._stopped:
                return
            if self._state.count(event):
                progress_log.warning("%s: run %s failed: %s", self._title, event.run_id,
                                     _failure_text(event))
                if self._state.counts["failed"] == MAX_FAILURES_SHOWN:
                    progress_log.warning("%s: further failed runs are only counted", self._title)
            now = time.monotonic()
            if now - self._last >= self._interval:
                self._last = now
                progress_log.info("%s: %s", self._title, self._state.line())

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            progress_log.info("%s: %s", self._title, self._state.line())


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
        self._state = _Counts(total)
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
        c = self._state.counts
        text = f"[green]ok {c['ok']}[/] [red]failed {c['failed']}[/] running {len(self._state.running)}"
        if c["skipped"]:
            text += f" skipped {c['skipped']}"
        if c["cancelled"]:
            text += f" [yellow]cancelled {c['cancelled']}[/]"
        return text

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._stopped:
                return
            show_failure = self._state.count(event)
            advance = 0 if event.kind is EventKind.RUN_STARTED else 1
            if event.kind is EventKind.RUN_FINISHED and event.metrics:
                items = list(event.metrics.items())[: self._max_metrics]
                self._latest = " ".join(f"{k}={_fmt(v)}" for k, v in items)
            if show_failure:
                self._print_failure(event)
            self._progress.update(
                self._task, advance=advance, counts=self._counts_text(), latest=self._latest
            )

    def _print_failure(self, event: Event) -> None:
        """One line above the bar per failed run (the first MAX_FAILURES_SHOWN)."""
        from rich.markup import escape

        failed = self._state.counts["failed"]
        self._progress.console.print(
            f"[red]failed[/] run {escape(event.run_id)}: {escape(_failure_text(event))}",
            highlight=False, soft_wrap=True,
        )
        if failed == MAX_FAILURES_SHOWN:
            self._progress.console.print("further failed runs are only counted", highlight=False)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._progress.refresh()
            self._progress.stop()
