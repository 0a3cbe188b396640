"""Claims and heartbeats: honest ``running`` records.

Before a worker executes a run it claims it in the store
(:meth:`Store.try_claim`, an atomic exclusive create naming the owner, see
:mod:`metalab._internal._owner`), so two launches of one experiment never
execute the same run at the same time.  While the operation runs, a
:class:`Heartbeat` thread refreshes the claim and the ``heartbeat_at`` of the
``running`` record every :func:`~metalab.query.heartbeat_interval` seconds.  A worker killed
with ``kill -9`` (or a lost node) stops the heartbeat: readers then show the
run as ``lost`` (:func:`metalab.query.effective_status`).  The next
launch takes the claim over at once when its owner is certainly dead (same
host and boot, pid gone), otherwise once the heartbeat is older than
:func:`~metalab.query.lost_after_seconds`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING

from metalab._errors import ExecutionError
from metalab._internal import _owner
from metalab._internal._time import utcnow
from metalab.model import RunRecord

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = [
    "ClaimedElsewhereError",
    "CompletedElsewhereError",
    "Heartbeat",
    "new_owner",
]

log = logging.getLogger("metalab.execution")

#: seconds after its start at which a first run (no earlier record) gets its
#: ``running`` record: the first heartbeat.  Until then its claim alone says
#: that it runs; a run that ends sooner writes only its final record.
RUNNING_RECORD_AFTER_S = 1.0
#: seconds the heartbeat thread sleeps when no run is registered (a new run wakes it at once)
_IDLE_WAIT_S = 60.0


def new_owner() -> str:
    """A claim owner unique to this execution: ``host:pid:boot:pidns:start:token``.

    See :mod:`metalab._internal._owner` for the fields and the liveness rule.
    """
    return _owner.new_owner()


class ClaimedElsewhereError(ExecutionError):
    """The run is being executed by another launch right now (its claim is live).

    Attributes:
        run_id: the run.
        holder: the owner string of the claim (``""`` if unknown).
    """

    def __init__(self, message: str, run_id: str = "", holder: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.holder = holder

    def __reduce__(self) -> tuple[object, ...]:  # keeps the attributes across processes
        return (type(self), (str(self), self.run_id, self.holder))


class CompletedElsewhereError(ClaimedElsewhereError):
    """Another launch completed the run (its ``success`` record exists) before this one got to it."""


class _Beater:
    """The one thread per process that beats for every running run of the process.

    Starting and joining a thread per run cost about 0.2 ms of a no-op run;
    registering with this thread costs a dict insert.  A beat that is slow
    (a slow disk) only delays the other runs' beats, which are due every
    :func:`~metalab.query.heartbeat_interval` seconds and read as lost only after
    :func:`~metalab.query.lost_after_seconds` (several intervals).
    Started on first use; a child made by ``fork`` starts afresh (the
    parent's thread is not there, and the parent's runs are not its own).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Heartbeat, float] = {}
        self._thread: threading.Thread | None = None
        # when the waiting thread wakes up by itself (monotonic); infinity while it is not waiting
        self._wake_at = math.inf

    def reset_after_fork(self) -> None:
        """In a child made by ``fork``: no thread, no runs (the lock may have been held)."""
        self._cond = threading.Condition()
        self._due = {}
        self._thread = None
        self._wake_at = math.inf

    def add(self, beat: Heartbeat, first_in: float) -> None:
        with self._cond:
            due_at = time.monotonic() + first_in
            self._due[beat] = due_at
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="metalab-heartbeat", daemon=True)
                self._thread.start()
            if due_at < self._wake_at:
                # due before the thread would look again: wake it (a run due later is
                # found when it wakes, so a sweep of short runs does not wake it per run)
                self._cond.notify()

    def discard(self, beat: Heartbeat) -> None:
        with self._cond:
            self._due.pop(beat, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [b for b, at in self._due.items() if at <= now]
                for b in due:
                    self._due[b] = now + b.interval
                if not due:
                    wait = max(min(self._due.values(), default=now + _IDLE_WAIT_S) - now, 0.0)
                    self._wake_at = now + wait
                    self._cond.wait(wait)
                    self._wake_at = math.inf
                    continue
            for b in due:
                b.beat()


_BEATER = _Beater()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_BEATER.reset_after_fork)


class Heartbeat:
    """Refreshes the claim and the ``running`` record of one run every ``interval`` seconds.

    The beats come from one background thread shared by all runs of the
    process.  The first beat comes after ``first_in`` seconds (default, or
    if not positive: ``interval``); each beat rewrites the ``running``
    record, so a run whose ``running`` record was not written at its start
    gets one then.  :meth:`stop` returns only when no heartbeat write of this
    run is in progress and none will follow, so the caller may then write
    the final record without a late heartbeat overwriting it.  Write errors
    are logged and retried at the next beat.  Thread-safe.
    """

    def __init__(
        self, store: Store, record: RunRecord, owner: str, interval: float,
        first_in: float | None = None,
    ) -> None:
        self._store = store
        self._record = record
        self._owner = owner
        self.interval = interval
        self._first_in = interval if first_in is None or first_in <= 0 else min(first_in, interval)
        self._lock = threading.Lock()
        self._stopped = False
        #: True once a beat has written the ``running`` record
        self.wrote_record = False

    def start(self) -> Heartbeat:
        _BEATER.add(self, self._first_in)
        return self

    def beat(self) -> None:
        """Write one heartbeat now (unless stopped); called by the shared thread."""
        with self._lock:
            if self._stopped:
                return
            try:
                self._store.touch_heartbeat(self._record.run_id, self._owner)
                self._store.put_run_record(
                    self._record.replace(heartbeat_at=utcnow()), durable=False
                )
                self.wrote_record = True
            except Exception as exc:
                log.warning("heartbeat of run %s failed: %s", self._record.run_id, exc)

    def stop(self) -> None:
        """Stop beating (idempotent); no heartbeat write happens after it returns."""
        with self._lock:  # waits for a beat in progress
            self._stopped = True
        _BEATER.discard(self)
