"""``print()`` and ``warnings`` of an operation, captured per run in its own process.

While at least one run executes in this process, ``sys.stdout`` and
``sys.stderr`` are replaced by proxies.  A write from a thread (or task)
running a run goes to that run's ``stdout`` / ``stderr`` log (a context
variable says which run, so concurrent runs in threads never mix their
output) and, with ``tee``, also to the stream that was there before (the
user still sees the prints on the terminal).  Writes outside a run pass
straight through.  Warnings a run raises (and Python shows) are written to
its ``stderr`` log in Python's usual form, and handed to the
``warnings.showwarning`` that was there before too with ``tee`` (so a test
runner that records them still sees them); each run starts with Python's
"shown once" memory of warnings cleared, so every run's log gets its
warnings.

The proxies are installed for the first run and the previous streams are
put back when the last run ends (also on errors and KeyboardInterrupt); a
stream someone else installed meanwhile is left in place (the proxy under
it passes writes through once no run is active).  Output of threads an
operation starts itself is not captured (they do not inherit the run's
context) and goes to the previous stream.

Out-of-process executors that point file descriptors 1 and 2 at the run's
logs (the process executor) do not use this; see
:func:`metalab.execution._worker.process_entry`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from metalab.execution._capture import RunLog

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = ["route_std"]

log = logging.getLogger("metalab.execution")

#: characters of an unfinished line kept before they are written anyway
_MAX_PARTIAL_LINE = 1 << 16


class _RunOutput:
    """The ``stdout`` and ``stderr`` logs of one run, created at their first line.

    Text is written line by line (an unfinished line waits for its end, for
    :meth:`close`, or until it is :data:`_MAX_PARTIAL_LINE` characters long).
    A log that cannot be written is reported once and then dropped.
    Thread-safe.
    """

    def __init__(self, store: Store, run_id: str, tee: bool) -> None:
        self._store = store
        self._run_id = run_id
        self.tee = tee
        self._lock = threading.Lock()
        self._logs: dict[str, RunLog | None] = {}
        self._partial: dict[str, str] = {"stdout": "", "stderr": ""}

    def write(self, name: str, text: str) -> None:
        with self._lock:
            pending = self._partial[name] + text
            cut = pending.rfind("\n") + 1
            if not cut and len(pending) < _MAX_PARTIAL_LINE:
                self._partial[name] = pending
                return
            if not cut:
                cut = len(pending)
            self._partial[name] = pending[cut:]
            problem = self._emit(name, pending[:cut])
        _report(problem)

    def _emit(self, name: str, text: str) -> str | None:
        """Write ``text`` to the log ``name``; the problem to report (after the lock is
        released: a logging handler may write to the proxied streams), if any."""
        problem = None
        if name not in self._logs:
            try:
                self._logs[name] = RunLog(self._store, self._run_id, name)
            except Exception as exc:
                self._logs[name] = None
                problem = f"run {self._run_id}: its {name} cannot be captured ({exc})"
        run_log = self._logs[name]
        if run_log is None:
            return problem
        try:
            run_log.write(text)
        except Exception as exc:
            self._logs[name] = None
            problem = f"run {self._run_id}: its {name} can no longer be captured ({exc})"
        return problem

    def close(self) -> None:
        problems = []
        with self._lock:
            for name, rest in self._partial.items():
                if rest:
                    problems.append(self._emit(name, rest))
            self._partial = {"stdout": "", "stderr": ""}
            for run_log in self._logs.values():
                if run_log is not None:
                    run_log.close()
        for problem in problems:
            _report(problem)


#: per thread: set while a capture problem is being logged; the proxies then pass
#: writes straight through (a handler writing to ``sys.stderr`` never re-enters a run's log)
_REPORTING = threading.local()


def _report(problem: str | None) -> None:
    if problem is None:
        return
    _REPORTING.active = True
    try:
        log.warning("%s", problem)
    finally:
        _REPORTING.active = False


_CURRENT: contextvars.ContextVar[_RunOutput | None] = contextvars.ContextVar(
    "metalab_run_output", default=None
)


class _StreamProxy:
    """Stands for ``sys.stdout`` or ``sys.stderr``: writes of a run go to its log."""

    def __init__(self, name: str, target: TextIO) -> None:
        self._name = name
        self._target = target

    def write(self, text: str) -> int:
        output = _CURRENT.get()
        if output is None or getattr(_REPORTING, "active", False):
            return self._target.write(text)
        output.write(self._name, str(text))
        if output.tee:
            # (outside the run: a stale proxy under this one passes it through, not
            # into the log a second time)
            token = _CURRENT.set(None)
            try:
                with contextlib.suppress(Exception):  # a closed terminal never fails the run
                    self._target.write(text)
            finally:
                _CURRENT.reset(token)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, attr: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self._target, attr)


class _ShowWarning:
    """Stands for ``warnings.showwarning``: a run's warnings go to its ``stderr`` log."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, message: Any, category: Any, filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
        output = _CURRENT.get()
        if output is None or file is not None:
            self.previous(message, category, filename, lineno, file, line)
            return
        output.write("stderr", warnings.formatwarning(message, category, filename, lineno, line))
        if output.tee:
            token = _CURRENT.set(None)  # (shown as before, not a second time in the log)
            try:
                self.previous(message, category, filename, lineno, file, line)
            finally:
                _CURRENT.reset(token)


class _StdRouter:
    """Refcounted installation of the proxies (the first run installs, the last removes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._installed: tuple[_StreamProxy | None, _StreamProxy | None, _ShowWarning] | None = None

    def acquire(self) -> None:
        with self._lock:
            self._active += 1
            if self._active == 1:
                # (a stream that is None, as under pythonw, stays None: nothing to tee to,
                # and code that checks for None keeps working)
                out = _StreamProxy("stdout", sys.stdout) if sys.stdout is not None else None
                err = _StreamProxy("stderr", sys.stderr) if sys.stderr is not None else None
                show = _ShowWarning(warnings.showwarning)
                if out is not None:
                    sys.stdout = out
                if err is not None:
                    sys.stderr = err
                warnings.showwarning = show
                self._installed = (out, err, show)

    def release(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active or self._installed is None:
                return
            out, err, show = self._installed
            self._installed = None
            if out is not None and sys.stdout is out:
                sys.stdout = out._target
            if err is not None and sys.stderr is err:
                sys.stderr = err._target
            if warnings.showwarning is show:
                warnings.showwarning = show.previous


_ROUTER = _StdRouter()


def _forget_shown_warnings() -> None:
    """Clear Python's memory of warnings shown once (each run then shows its own)."""
    reset = getattr(warnings, "_filters_mutated", None) or getattr(
        warnings, "_filters_mutated_lock_held", None
    )
    if reset is not None:
        reset()


@contextlib.contextmanager
def route_std(store: Store, run_id: str, *, tee: bool = True) -> Iterator[None]:
    """Capture what this context writes to ``sys.stdout`` / ``sys.stderr`` in the run's
    ``stdout`` / ``stderr`` logs (with ``tee``, also shown as before).

    Thread-safe: concurrent runs in threads each get their own output.
    Everything is put back on exit, whatever ends the context.
    """
    output = _RunOutput(store, run_id, tee)
    token = None
    acquired = False
    try:
        _ROUTER.acquire()
        acquired = True
        token = _CURRENT.set(output)
        _forget_shown_warnings()
        yield
    finally:
        if token is not None:
            _CURRENT.reset(token)
        if acquired:
            _ROUTER.release()
        output.close()
