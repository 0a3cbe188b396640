"""Live metric series: the steps of a running run, appended to one file as they come.

While a run executes, every stepped metric (``capture.metric(name, value,
step=...)``) is appended to the run's live series file,
``results/{run_id}/_live_series.jsonl`` in a FileStore folder (next to the
series documents ``results/{run_id}/{name}.json`` that the run writes when it
ends; :meth:`FileStore.list_data` lists only ``*.json`` files, so the live
file is never taken for a data item).  Readers of a ``running`` run read the
steps written so far from it; when the run ends its series documents and its
final record are the truth, and the live file is removed.

File format (JSON Lines, UTF-8), one JSON value per line ending in ``\\n``:

* the first line is a header object ``{"live_series": 1, "attempt": N}``
  (the attempt that writes the file; a reader asking for another attempt
  gets nothing, so a new attempt never shows an older one's steps);
* every further line is a chunk of points of one series,
  ``[name, [step, ...], [value, ...]]``, in the order they were captured; an
  infinite or NaN float value is written as the text ``"Infinity"``,
  ``"-Infinity"`` or ``"NaN"`` (as in every series document, see
  :mod:`metalab._internal._json`).

Writes are appends (``O_APPEND``) of whole lines, buffered in memory: a
writer sends its pending points (one line per series) in one ``write`` when
:data:`FLUSH_EVERY_STEPS` points are waiting, and a background thread (one
per process) sends what waits every :data:`FLUSH_INTERVAL_S` seconds, so a
reader sees a step at the latest that long after it was captured and a hot
loop pays no system call (and no encoding) per step.  Steps still in the buffer when the process is killed
(``kill -9``) are lost.  A last line without its ``\\n`` (a write cut short
by a kill) is ignored by readers: never an error, never a wrong value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from typing import Any

from metalab._internal._atomic import open_in_folder, write_all
from metalab._internal._json import JSONDecodeError, decode_list, dumps, encode_list, loads

__all__ = [
    "FLUSH_EVERY_STEPS",
    "FLUSH_INTERVAL_S",
    "LIVE_SERIES_FILE",
    "LiveSeries",
    "LiveSeriesWriter",
    "read_live_series_file",
]

log = logging.getLogger("metalab.store")

#: name of a run's live series file in its ``results/{run_id}/`` folder
LIVE_SERIES_FILE = "_live_series.jsonl"
#: version number in the header line
LIVE_SERIES_FORMAT = 1
#: pending lines that make a writer write at once
FLUSH_EVERY_STEPS = 512
#: seconds after which the background thread writes a writer's pending lines
FLUSH_INTERVAL_S = 0.5

#: ``{name: (steps, values)}``, each series ordered by step (stable for equal steps)
LiveSeries = dict[str, tuple[list[int], list[Any]]]

_TRUNCATE_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
class LiveSeriesWriter:
    """Appends the points of one run attempt to its live series file.

    Opening truncates the file (a new attempt starts it afresh) and writes
    the header line.  :meth:`append` buffers; :meth:`flush` writes what is
    pending in one ``write``.  Thread-safe.  After an OSError the writer is
    :attr:`broken`: further appends are dropped (the run's final series
    documents do not depend on this file).

    Raises (on construction): OSError if the file cannot be created.
    """

    def __init__(self, path: str, attempt: int = 1) -> None:
        self.path = path
        self._lock = threading.Lock()
        #: name -> (steps, values) waiting to be written
        self._pending: dict[str, tuple[list[int], list[Any]]] = {}
        self._waiting = 0
        self._closed = False
        self.broken: Exception | None = None
        self._fd: int | None = open_in_folder(path, _TRUNCATE_FLAGS)
        header = {"live_series": LIVE_SERIES_FORMAT, "attempt": int(attempt)}
        try:
            write_all(self._fd, dumps(header) + b"\n")
        except OSError:
            self._close_fd()
            raise

    def append(self, name: str, step: int, value: Any) -> None:
        """Buffer the point ``(step, value)`` of series ``name`` (written within
        :data:`FLUSH_INTERVAL_S` seconds, or at once every :data:`FLUSH_EVERY_STEPS` points).

        ``value`` is an int, float, bool or str.

        Raises:
            OSError: the buffer was full and could not be written (the writer
                is then :attr:`broken`).
        """
        with self._lock:
            if self._closed or self.broken is not None:
                return
            entry = self._pending.get(name)
            if entry is None:
                entry = self._pending[name] = ([], [])
            entry[0].append(step)
            entry[1].append(value)
            self._waiting += 1
            if self._waiting == 1:
                _FLUSHER.add(self)
            elif self._waiting >= FLUSH_EVERY_STEPS:
                self._flush_locked()

    def flush(self) -> None:
        """Write the pending points now.

        Raises:
            OSError: the write failed (the writer is then :attr:`broken`).
        """
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._waiting or self._fd is None or self.broken is not None:
            return
        pending, self._pending, self._waiting = self._pending, {}, 0
        try:
            data = b"".join([
                dumps([name, steps, encode_list(values)]) + b"\n"
                for name, (steps, values) in pending.items()
            ])
        except ValueError as exc:  # a value JSON cannot hold (an int beyond 64 bits)
            self.broken = exc
            raise OSError(f"a point of the live series cannot be encoded: {exc}") from exc
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self.broken = exc
            raise

    def close(self) -> None:
        """Write what is pending and close the file (idempotent).

        Raises:
            OSError: the last write failed (the file is closed regardless).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._flush_locked()
            finally:
                self._close_fd()
        _FLUSHER.discard(self)

    def discard(self) -> None:
        """Close without writing what is pending, and remove the file (idempotent).

        Raises:
            OSError: the file exists but cannot be removed.
        """
        with self._lock:
            self._closed = True
            self._pending, self._waiting = {}, 0
            self._close_fd()
        _FLUSHER.discard(self)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _background_flush(self) -> None:
        """The flusher thread's write: a failure is logged once, never raised."""
        with self._lock:
            if self._closed or self.broken is not None:
                return
            try:
                self._flush_locked()
            except OSError as exc:
                log.warning(
                    "live metric series %s could not be written (%s); readers see no further "
                    "steps of this run until it ends (its final series are written as usual)",
                    self.path, exc,
                )


class _Flusher:
    """One daemon thread per process writing the pending points of open writers.

    It runs only while some writer has points waiting, and stops when none
    has.  Writers are held weakly: a writer dropped without :meth:`close`
    does not keep the thread alive.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: weakref.WeakSet[LiveSeriesWriter] = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def add(self, writer: LiveSeriesWriter) -> None:
        with self._lock:
            self._waiting.add(writer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="metalab-live-series", daemon=True
                )
                self._thread.start()

    def discard(self, writer: LiveSeriesWriter) -> None:
        with self._lock:
            self._waiting.discard(writer)

    def _loop(self) -> None:
        wait = threading.Event()
        while True:
            wait.wait(FLUSH_INTERVAL_S)
            with self._lock:
                writers = list(self._waiting)
                self._waiting.clear()
                if not writers:
                    self._thread = None
                    return
            for writer in writers:
                writer._background_flush()

    def _after_fork(self) -> None:
        # the child has no flusher thread, and the lock may have been held by another thread
        self._lock = threading.Lock()
        self._waiting = weakref.WeakSet()
        self._thread = None


_FLUSHER = _Flusher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_FLUSHER._after_fork)


def read_live_series_file(path: str, attempt: int | None = None) -> LiveSeries:
    """The series in the live file ``path``: ``{name: (steps, values)}``.

    ``{}`` if the file is missing, empty, has no complete header line, or
    (with ``attempt``) was written by another attempt.  A last line without
    its ``\\n`` is ignored (a write cut short); a complete line that is not a
    point is skipped with a warning naming the file and the line.  Values are
    floats for the texts ``"Infinity"``, ``"-Infinity"`` and ``"NaN"``.
    Never raises for the file's content.

    Raises:
        OSError: the file exists but cannot be read (permissions, I/O error).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    lines = data.split(b"\n")
    lines.pop()  # "" after the last \n, or a torn last line
    if not lines or not _header_matches(lines[0], attempt):
        return {}
    found: dict[str, tuple[list[int], list[Any]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        chunk = _chunk(line)
        if chunk is None:
            log.warning("live metric series %s: line %d is not a chunk of points; skipped",
                        path, number)
            continue
        name, steps, values = chunk
        into = found.setdefault(name, ([], []))
        into[0].extend(steps)
        into[1].extend(values)
    return {name: _by_step(steps, values) for name, (steps, values) in found.items()}


def _header_matches(line: bytes, attempt: int | None) -> bool:
    try:
        header = loads(line)
    except JSONDecodeError:
        return False
    if not isinstance(header, dict) or header.get("live_series") != LIVE_SERIES_FORMAT:
        return False
    return attempt is None or header.get("attempt") == attempt


def _chunk(line: bytes) -> tuple[str, list[int], list[Any]] | None:
    """``(name, steps, values)`` of one chunk line, or None if it is not one."""
    try:
        chunk = loads(line)
    except JSONDecodeError:
        return None
    if not (isinstance(chunk, list) and len(chunk) == 3 and isinstance(chunk[0], str)):
        return None
    name, steps, values = chunk
    if not (isinstance(steps, list) and isinstance(values, list) and len(steps) == len(values)):
        return None
    if not all(type(step) is int for step in steps):
        return None
    return name, steps, decode_list(values)


def _by_step(steps: list[int], values: list[Any]) -> tuple[list[int], list[Any]]:
    order = sorted(range(len(steps)), key=steps.__getitem__)
    return [steps[i] for i in order], [values[i] for i in order]
