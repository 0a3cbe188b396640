"""Capture: how an operation reports metrics, data, artifacts and logs.

Also holds the per-run log writer and the routing of Python ``logging``
records to the log of the run that emitted them (a context variable, so
concurrent runs in threads never mix their logs).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError, ValidationError
from metalab._internal import _json
from metalab._internal._atomic import open_in_folder, write_all
from metalab._internal._names import check_name
from metalab._internal._time import to_iso, utcnow
from metalab.model import ArtifactDescriptor, serialize

if TYPE_CHECKING:
    from metalab.store import LiveSeriesWriter, Store

__all__ = ["Capture", "RunLog", "is_scalar", "route_logging", "to_scalar"]

log = logging.getLogger("metalab.execution")

_LEVELS = {"debug", "info", "warning", "error", "critical"}
#: checked metric names a capture remembers (beyond, names are checked on every call)
_NAMES_REMEMBERED = 4096


def is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str) or (
        type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0
    )


def to_scalar(name: str, value: Any) -> int | float | bool | str:
    """Validate a metric value; numpy scalars become Python scalars.

    Floats may be infinite or NaN (stored as the texts ``"Infinity"``,
    ``"-Infinity"``, ``"NaN"``, read back as floats; see
    :mod:`metalab._internal._json`), so those three texts are refused as
    text values: they would read back as numbers.

    Raises:
        ValidationError: the value is not an int, float, bool or str, or is
            one of the three reserved texts.
    """
    if not isinstance(value, bool | int | float | str) and is_scalar(value):
        value = value.item()
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if value in _json.NON_FINITE_TEXTS:
            raise ValidationError(
                f"metric {name!r}: the text {value!r} is reserved for the number "
                f"{_json.NON_FINITE_TEXTS[value]!r} in run files; record the float "
                f"(float({value!r})) or another text"
            )
        return value
    raise ValidationError(
        f"metric {name!r} must be an int, float, bool or str, got {type(value).__name__}; "
        "store arrays and nested values with capture.data() instead"
    )


def _array_data(array: Any) -> Any:
    """A numpy array's elements as JSON values: an infinite or NaN element of a
    float array becomes its text ``"Infinity"`` / ``"-Infinity"`` / ``"NaN"``
    (the stored ``dtype`` reads it back as the number; see _json)."""
    if getattr(array.dtype, "kind", "") != "f" or not array.size:
        return array.tolist()
    import numpy as np

    array = np.asarray(array)  # (a numpy scalar too)
    if np.isfinite(array).all():
        return array.tolist()
    cells = array.astype(object)
    cells[np.isnan(array)] = "NaN"
    cells[np.isposinf(array)] = "Infinity"
    cells[np.isneginf(array)] = "-Infinity"
    return cells.tolist()


# --------------------------------------------------------------------------- logs
_APPEND_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def _open_append(path: str) -> int:
    # (the folder is made again if it was removed after log_path() made it)
    return open_in_folder(path, _APPEND_FLAGS)


class RunLog:
    """Append-only text log ``name`` of one run, written line by line.

    Uses a local file opened once for appending when the store offers one
    (``supports_log_path``), else ``store.append_log``.  Each line is one
    unbuffered ``write`` (readers see it at once; not fsynced: a log that a
    power loss cuts short is still a log).  Text that is not valid Unicode
    is written with ``?`` in its place.  Thread-safe.

    With ``header`` (the worker's "attempt N started" line) the log file is
    created only when the run writes something: a run without output leaves
    no log file (one file less per run of a large sweep), and then
    :meth:`end` writes nothing either.  A log an earlier attempt left gets
    the header at once, so its last lines never pass for this attempt's.

    Raises (on construction): OSError if the log file cannot be opened.
    """

    def __init__(self, store: Store, run_id: str, name: str = "run", header: str | None = None) -> None:
        self._store = store
        self._run_id = run_id
        self._name = name
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: str | None = None
        self._pending = ""  # header lines waiting for the first write
        if store.supports_log_path:
            self._path = store.log_path(run_id, name)
            if header is None:
                self._fd = _open_append(self._path)
            else:
                try:  # a log of an earlier attempt: continue it now
                    self._fd = os.open(self._path, _APPEND_FLAGS & ~os.O_CREAT)
                except FileNotFoundError:
                    self._pending = _as_line(header)
        if header is not None and not self._pending:
            self.write(header)

    def write(self, text: str) -> None:
        text = _as_line(text)
        with self._lock:
            if self._pending:
                text, self._pending = self._pending + text, ""
            if self._fd is None and self._path is not None:
                self._fd = _open_append(self._path)
            if self._fd is not None:
                write_all(self._fd, text.encode("utf-8", "replace"))
            else:
                self._store.append_log(self._run_id, self._name, text)

    def end(self, text: str) -> None:
        """Write ``text`` if the log exists (anything was written); else leave no file."""
        with self._lock:
            if self._pending:
                return
        self.write(text)

    def line(self, level: str, message: str) -> None:
        self.write(f"{to_iso(utcnow())} {level.upper():<8} {message}")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def _as_line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


_CURRENT_LOG: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "metalab_run_log", default=None
)


class _RoutingHandler(logging.Handler):
    """Root handler writing each record to the log of the run active in its context."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        target = _CURRENT_LOG.get()
        if target is None:
            # outside a run: this handler must not hide the record from Python's
            # last-resort stderr output when no other handler would take it
            last = logging.lastResort
            if last is not None and record.levelno >= last.level and self._only_handler(record):
                last.handle(record)
            return
        try:
            target.write(f"{to_iso(utcnow())} {self.format(record)}")
        except Exception:  # never let logging break a run
            self.handleError(record)

    def _only_handler(self, record: logging.LogRecord) -> bool:
        """True if no handler but this one sees ``record`` (logging is not configured)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


class _Router:
    """Refcounted installation of the routing handler on the root logger.

    While at least one run is active the root logger's level is lowered to
    INFO (if it was higher) so ``logger.info`` calls of operations reach the
    run log; the previous level is restored when the last run ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._handler = _RoutingHandler()
        self._saved_level: int | None = None

    def acquire(self) -> None:
        with self._lock:
            self._active += 1
            if self._active == 1:
                root = logging.getLogger()
                root.addHandler(self._handler)
                if root.level > logging.INFO or root.level == logging.NOTSET:
                    self._saved_level = root.level
                    root.setLevel(logging.INFO)

    def release(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                root = logging.getLogger()
                root.removeHandler(self._handler)
                if self._saved_level is not None:
                    root.setLevel(self._saved_level)
                    self._saved_level = None


_ROUTER = _Router()


@contextlib.contextmanager
def logging_routed() -> Iterator[None]:
    """Keep the routing handler installed for a batch of runs executed one after another.

    :func:`route_logging` installs it for its first run and removes it after
    its last; holding it here for a whole batch spares each run the install
    (a root logger level change clears every logger's level cache).
    Records emitted outside a run's context are not routed to a run log; when
    logging is not configured they still reach Python's last-resort output
    (stderr, warnings and above), as without the handler.
    """
    _ROUTER.acquire()
    try:
        yield
    finally:
        _ROUTER.release()


@contextlib.contextmanager
def route_logging(run_log: RunLog) -> Iterator[None]:
    """Send Python logging records emitted in this context to ``run_log``."""
    _ROUTER.acquire()
    token = _CURRENT_LOG.set(run_log)
    try:
        yield
    finally:
        _CURRENT_LOG.reset(token)
        _ROUTER.release()


# ------------------------------------------------------------------------ capture
class Capture:
    """What an operation records about its run.

    * ``metric(name, value, step=None)``: a scalar (int, float, bool, str;
      infinite and NaN floats are kept, see :func:`to_scalar`).  Without
      ``step`` it goes into the run record's ``metrics``; with ``step`` it is
      a point of a series, stored as a separate document when the run ends
      (listed in ``RunRecord.series``) so records stay small.  While the run
      goes on, each point is also appended to the run's live series file
      when the store keeps one (``supports_live_series``; buffered, visible
      to readers within :data:`~metalab.store._series.FLUSH_INTERVAL_S`
      seconds, see :meth:`Store.read_live_series`).
    * ``data(name, obj)``: JSON value or numpy array, written at once.
    * ``artifact(name, obj_or_path)``: a file or a serialized object.
    * ``log(msg)`` / ``logger``: lines streamed to the run's ``run`` log.

    Names are checked before anything is written (``InvalidNameError``);
    one name cannot be both a series and a data item (``ValidationError``).
    Thread-safe: an operation may capture from several threads.  Calls after
    the run ended raise :class:`~metalab.ExecutionError`.
    """

    def __init__(
        self, store: Store, run_id: str, run_log: RunLog, *, experiment_id: str = "", attempt: int = 1
    ) -> None:
        self._store = store
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._attempt = attempt
        #: the live series file (opened at the first step); None: not yet, or none kept
        self._live: LiveSeriesWriter | None = None
        self._live_off = not store.supports_live_series
        #: (metric name, scalar?) pairs already checked by check_name
        self._names_ok: set[tuple[str, bool]] = set()
        self._log = run_log
        self._lock = threading.RLock()
        self._metrics: dict[str, Any] = {}
        self._series: dict[str, tuple[list[Any], list[Any]]] = {}
        self._data: list[str] = []
        self._artifacts: dict[str, ArtifactDescriptor] = {}
        self._closed = False
        self.logger: logging.Logger = logging.getLogger("metalab.run")
        if self.logger.level == logging.NOTSET:
            self.logger.setLevel(logging.DEBUG)

    # ----------------------------------------------------------------- helpers
    def _check_open(self) -> None:
        if self._closed:
            raise ExecutionError(
                f"capture of run {self.run_id} is closed: the run has ended; "
                "capture values only while the operation runs"
            )

    # ----------------------------------------------------------------- metrics
    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Record scalar metric ``name`` (a series point when ``step`` is given).

        Raises:
            InvalidNameError: bad name.  ValidationError: non-scalar value, a
            non-integer step, or ``name`` is already a data item.
        """
        if type(name) is not str or (name, step is None) not in self._names_ok:
            # (checked once per name, not at every step of a hot loop; a stepped metric
            # becomes the data file "{name}.json": its length counts in bytes)
            check_name(name, "metric name", file_name=None if step is None else f"{name}.json")
            if len(self._names_ok) < _NAMES_REMEMBERED:
                self._names_ok.add((name, step is None))
        scalar = to_scalar(name, value)
        with self._lock:
            self._check_open()
            if step is None:
                self._metrics[name] = scalar
                return
            if isinstance(step, bool) or not isinstance(step, int):
                raw: Any = step
                if is_scalar(raw) and isinstance(raw.item(), int):
                    step = int(raw.item())
                else:
                    raise ValidationError(f"step of metric {name!r} must be an int, got {step!r}")
            if name in self._data:
                raise ValidationError(
                    f"{name!r} is already a data item of run {self.run_id}; "
                    "use another name for the stepped metric"
                )
            steps, values = self._series.setdefault(name, ([], []))
            steps.append(step)
            values.append(scalar)
            if not self._live_off:
                try:
                    live = self._live
                    if live is None:
                        live = self._live = self._store.open_live_series(self.run_id, self._attempt)
                    live.append(name, step, scalar)
                except OSError as exc:
                    self._live_failed(exc)

    def _live_failed(self, exc: OSError) -> None:
        """Turn live series off for this run after a failed write (its final series
        documents do not depend on the file)."""
        self._live_off = True
        log.warning(
            "run %s: live metric series could not be written (%s); its steps are visible "
            "when the run ends", self.run_id, exc,
        )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record several metrics at once (see :meth:`metric`)."""
        for name in metrics:
            check_name(name, "metric name", file_name=None if step is None else f"{name}.json")
            to_scalar(name, metrics[name])
        for name, value in metrics.items():
            self.metric(name, value, step=step)

    # -------------------------------------------------------------------- data
    def data(self, name: str, obj: Any, metadata: dict[str, Any] | None = None) -> None:
        """Store structured data ``name`` now (JSON value or numpy array).

        A NaN or infinite element of a numpy float array is kept (stored as
        its text, read back by ``Run.data`` as the number); JSON values other
        than such arrays cannot hold one.

        Raises:
            InvalidNameError, ValidationError: bad name, name used by a
            stepped metric, a value that is not JSON-serializable, or a NaN or
            infinity outside a numpy float array.
        """
        check_name(name, "data name")
        payload: dict[str, Any] = {"kind": "data", "dtype": None, "shape": None}
        if type(obj).__module__ == "numpy" and hasattr(obj, "tolist") and hasattr(obj, "dtype"):
            payload["data"] = _array_data(obj)
            payload["dtype"] = str(obj.dtype)
            payload["shape"] = list(getattr(obj, "shape", ()))
        else:
            payload["data"] = obj
        payload["metadata"] = dict(metadata or {})
        try:
            encoded = _json.dumps(payload)
        except TypeError as exc:
            raise ValidationError(
                f"data {name!r} is not JSON-serializable ({exc}); store it with "
                "capture.artifact(name, obj, kind='pickle') instead"
            ) from exc
        if b"null" in encoded and _json.has_non_finite(payload):
            raise ValidationError(
                f"data {name!r} holds NaN or an infinity, which JSON cannot store (it would "
                "read back as null); pass it as a numpy float array (such elements are "
                "kept), or store it with capture.artifact(name, obj, kind='pickle')"
            )
        with self._lock:
            self._check_open()
            if name in self._series:
                raise ValidationError(
                    f"{name!r} is already a stepped metric of run {self.run_id}; "
                    "use another name for the data item"
                )
            self._store.put_data(self.run_id, name, payload)
            if name not in self._data:
                self._data.append(name)

    # --------------------------------------------------------------- artifacts
    def artifact(
        self,
        name: str,
        obj_or_path: Any,
        kind: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactDescriptor:
        """Store an artifact and return its descriptor.

        A ``str`` or path-like naming an existing file stores that file as is
        (kind ``"file"`` unless given, format = its extension).  Anything else
        is serialized (json, numpy; pickle only with ``kind="pickle"``).

        Raises:
            InvalidNameError: bad name.  ValidationError: a path-like that is
            not a file, or an object the chosen kind cannot store.
        """
        check_name(name, "artifact name")
        self._check_open()
        source: bytes | os.PathLike[str]
        path: Path | None = None
        if isinstance(obj_or_path, os.PathLike):
            path = Path(obj_or_path)
            if not path.is_file():
                raise ValidationError(
                    f"artifact {name!r}: {str(path)!r} is not an existing file; "
                    "pass an existing file path or the object itself"
                )
        elif isinstance(obj_or_path, str) and kind in (None, "file"):
            try:
                if os.path.isfile(obj_or_path):
                    path = Path(obj_or_path)
            except (OSError, ValueError):
                path = None
        if path is not None:
            source = path
            akind = kind or "file"
            fmt = path.suffix.lstrip(".")
        else:
            source, akind, fmt = serialize(obj_or_path, kind)
        desc = self._store.put_artifact(
            self.run_id, name, source, kind=akind, format=fmt, metadata=dict(metadata or {})
        )
        with self._lock:
            self._artifacts[name] = desc
        return desc

    # -------------------------------------------------------------------- logs
    def log(self, message: str, level: str = "info") -> None:
        """Append ``message`` to the run's ``run`` log right away."""
        lvl = str(level).lower()
        if lvl not in _LEVELS:
            raise ValidationError(f"log level must be one of {sorted(_LEVELS)}, got {level!r}")
        self._check_open()
        self._log.line(lvl, str(message))

    # -------------------------------------------------------------- finishing
    def _remove_earlier_live(self) -> None:
        """Remove a live series file an earlier, killed attempt left (this one wrote none)."""
        try:
            path = self._store.live_series_path(self.run_id)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError as exc:
            log.warning("run %s: could not remove the live series file of an earlier "
                        "attempt: %s", self.run_id, exc)

    def _end_live(self, *, all_written: bool) -> None:
        """Close the live series file: removed once every series document is written
        (they are the truth now), else kept (the steps stay readable).  Never raises."""
        live, self._live = self._live, None
        if live is None:
            if all_written and self._attempt > 1 and not self._live_off:
                self._remove_earlier_live()
            return
        try:
            if all_written:
                live.discard()
            else:
                live.close()
        except OSError as exc:
            log.warning("run %s: could not close its live series file %s: %s",
                        self.run_id, live.path, exc)

    @property
    def metrics(self) -> dict[str, Any]:
        """A copy of the scalar metrics captured so far."""
        with self._lock:
            return dict(self._metrics)

    def _finish(self) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...], tuple[ArtifactDescriptor, ...], list[str]]:
        """Close the capture and write the buffered series.

        Returns (metrics, data names, series names, artifacts, warnings).
        Never raises: a series that cannot be written becomes a warning.
        """
        with self._lock:
            self._closed = True
            warnings: list[str] = []
            written: list[str] = []
            for name, (steps, values) in self._series.items():
                order = sorted(range(len(steps)), key=steps.__getitem__)
                payload = {
                    "kind": "series",
                    "data": {"step": [steps[i] for i in order],
                             "value": _json.encode_list([values[i] for i in order])},
                    "dtype": None,
                    "shape": None,
                    "metadata": {},
                }
                try:
                    self._store.put_data(self.run_id, name, payload)
                    written.append(name)
                except Exception as exc:
                    log.error("run %s: could not store metric series %r: %s", self.run_id, name, exc)
                    warnings.append(f"metric series {name!r} could not be stored: {exc}")
            self._end_live(all_written=len(written) == len(self._series))
            return (
                dict(self._metrics),
                tuple(self._data),
                tuple(written),
                tuple(self._artifacts.values()),
                warnings,
            )
