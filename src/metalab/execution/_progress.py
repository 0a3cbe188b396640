"""Progress of a submission, driven by run events: a rich bar on a terminal, log lines elsewhere.

:func:`progress_reporter` decides, once per submission: ``progress=True`` is
the bar, ``False`` nothing, ``None`` (the default of :func:`metalab.run`) the
bar when both stdout and stderr are terminals, else :class:`ProgressLog`
(lines on the ``metalab.progress`` logger, seen when logging is
configured).  Both report each failed run as it happens (its id and the
first line of its error, never a traceback), the first
:data:`MAX_FAILURES_SHOWN` of a submission; the rest are counted (and the
end-of-submission summary names the first one).  Runs that fail because the
disk is full are not listed (one line says so; the end of the submission
names the folder once).  rich is imported lazily.
"""

from __future__ import annotations

import errno
import logging
import math
import os
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

#: what the error of a run that failed for a full disk says (``os.strerror(ENOSPC)``)
_DISK_FULL = os.strerror(errno.ENOSPC)

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
        self.listed = 0  # failures listed or counted one by one
        self.disk_full = 0  # failures for a full disk

    def count(self, event: Event) -> str | None:
        """Count ``event``; the line to show for it at once, if any.

        A failure gets ``run <id> failed: <first error line>`` (the first
        :data:`MAX_FAILURES_SHOWN`, then one line saying the rest are counted).
        Failures for a full disk are not listed one by one (the end of the
        submission names the folder once): the first gets one line saying so.
        """
        if event.kind is EventKind.RUN_STARTED:
            self.running.add(event.run_id)
            return None
        self.running.discard(event.run_id)
        key = _COUNTED[event.kind]
        self.counts[key] += 1
        if key != "failed":
            return None
        text = _failure_text(event)
        if _DISK_FULL in text:
            self.disk_full += 1
            if self.disk_full > 1:
                return None
            return (f"run {event.run_id} failed: the disk is full; the runs that fail for it "
                    "are reported when the submission ends")
        self.listed += 1
        if self.listed > MAX_FAILURES_SHOWN:
            return None
        line = f"run {event.run_id} failed: {text}"
        if self.listed == MAX_FAILURES_SHOWN:
            line += " (further failed runs are only counted)"
        return line

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
            shown = self._state.count(event)
            if shown is not None:
                progress_log.warning("%s: %s", self._title, shown)
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
            shown = self._state.count(event)
            advance = 0 if event.kind is EventKind.RUN_STARTED else 1
            if event.kind is EventKind.RUN_FINISHED and event.metrics:
                items = list(event.metrics.items())[: self._max_metrics]
                self._latest = " ".join(f"{k}={_fmt(v)}" for k, v in items)
            if shown is not None:
                from rich.markup import escape

                self._progress.console.print(f"[red]{escape(shown)}[/]", highlight=False,
                                             soft_wrap=True)
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
