"""Which stored documents are runs: the one rule every reader of run records applies.

``load_results``, the query engines (catalog, scan, PostgreSQL) and the CLI
skip a document that breaks :func:`record_problem` and report it, naming its
file, instead of showing it as a (blank) run.

Where bulk readers report: to the callback set with :func:`problems_to` for
the current thread / task (a :class:`contextvars.ContextVar`), else
:func:`warn_corrupt` (a logged warning).  So a caller
(``load_results(on_error=...)``) collects what a query skipped without every
engine taking a callback argument.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

from metalab._errors import CorruptRecordError
from metalab._internal._json import JSONDecodeError, loads
from metalab.model import RECORD_SCHEMA_VERSION, Status

__all__ = [
    "STATUS_VALUES",
    "ErrorCallback",
    "parse_record",
    "problems_to",
    "record_problem",
    "report_problem",
    "warn_corrupt",
]

log = logging.getLogger("metalab.store")

#: ``on_error(err)``: told of each file a bulk read skipped
ErrorCallback = Callable[[CorruptRecordError], None]

#: the statuses a stored record may have
STATUS_VALUES = frozenset(s.value for s in Status)

_sink: contextvars.ContextVar[ErrorCallback | None] = contextvars.ContextVar(
    "metalab_record_problems", default=None
)


def warn_corrupt(err: CorruptRecordError) -> None:
    """Default ``on_error`` for bulk reads: log a warning naming the file, go on."""
    log.warning("skipping unreadable file: %s", err)


def record_problem(doc: Any) -> str | None:
    """Why ``doc`` (a parsed run file) cannot be read as a run; None if it can.

    A run document is a JSON object with a non-empty text ``run_id`` and
    ``experiment_id``, a known ``status``, ``started_at`` absent or a text,
    and a ``schema_version`` (default 1) this metalab understands.  The
    answer completes "run record <file> ...".  Pure; thread-safe.
    """
    if type(doc) is not dict:
        return "is not a JSON object"
    version = doc.get("schema_version", 1)
    run_id, experiment_id, started = doc.get("run_id"), doc.get("experiment_id"), doc.get(
        "started_at")
    status = doc.get("status")
    if (
        type(run_id) is str and run_id
        and type(experiment_id) is str and experiment_id
        and type(status) is str and status in STATUS_VALUES
        and type(version) is int and version <= RECORD_SCHEMA_VERSION
        and (started is None or type(started) is str)
    ):
        return None
    if type(version) is not int or version > RECORD_SCHEMA_VERSION:
        return (
            f"has schema_version {_short(version)}, newer than this metalab understands "
            f"({RECORD_SCHEMA_VERSION}); upgrade metalab to read it"
        )
    wrong = [
        name if value is None else f"{name} (it holds {_short(value)})"
        for name, value, ok in (
            ("run_id", run_id, type(run_id) is str and run_id),
            ("experiment_id", experiment_id, type(experiment_id) is str and experiment_id),
            ("status", status, type(status) is str and status in STATUS_VALUES),
            ("started_at", started, started is None or type(started) is str),
        )
        if not ok
    ]
    return "lacks a valid " + ", ".join(wrong)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_record(path: str, data: bytes) -> dict[str, Any] | CorruptRecordError:
    """The run document in ``data`` (the bytes of the file ``path``), or the
    error naming the file that says why it is not one (see :func:`record_problem`)."""
    try:
        doc = loads(data)
    except JSONDecodeError as exc:
        return CorruptRecordError(
            f"run record {path} is not valid JSON ({exc}); it was skipped. Delete it to rerun "
            "the run, or restore it from a backup",
            path,
        )
    why = record_problem(doc)
    if why is not None:
        return CorruptRecordError(f"run record {path} {why}; it was skipped", path)
    return doc


def report_problem(exc: CorruptRecordError) -> None:
    """Report a skipped file to the current :func:`problems_to` callback, else log it."""
    (_sink.get() or warn_corrupt)(exc)


@contextlib.contextmanager
def problems_to(callback: ErrorCallback) -> Iterator[None]:
    """Send what :func:`report_problem` reports in this context to ``callback``."""
    token = _sink.set(callback)
    try:
        yield
    finally:
        _sink.reset(token)
