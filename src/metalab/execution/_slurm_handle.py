"""SlurmRunHandle: a SLURM submission followed through the store's run records and ``squeue``;
:func:`reconnect` finds the latest one of an experiment from any process."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence, Set
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import NotFoundError, ValidationError
from metalab.execution._events import Event, EventCallback, EventDispatcher, EventKind
from metalab.execution._handle import Handle, RunStatus
from metalab.execution._progress import progress_reporter
from metalab.execution._slurm_files import load_experiment, load_submission, submission_dir
from metalab.execution._slurm_queue import queue_counts, scancel
from metalab.model import ErrorInfo

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = ["SlurmRunHandle", "reconnect"]

log = logging.getLogger("metalab.execution")

#: up to this many open runs, the handle reads their records one by one; more: one scan
_READ_ONE_BY_ONE_MAX = 500
#: the handle polls at least this often (seconds) when status or done is read
_MIN_POLL_S = 0.5
#: polls in a row that find none of the submission's jobs in the queue before it settles
_EMPTY_QUEUE_POLLS = 2

_FINAL = {"success", "failed", "cancelled"}


class SlurmRunHandle(Handle):
    """A SLURM submission: status, waiting, results, cancellation.

    Same surface as :class:`~metalab.RunHandle` (``status``, ``done``,
    ``wait``, ``result``, ``cancel``, ``store``, ``experiment_id``), driven by
    polling the store's run records and ``squeue`` every
    ``SlurmConfig.poll_interval`` seconds.  Events (and the progress bar)
    are derived from that polling, in the order runs were seen to end.  The
    submission has ended when every submitted run has a final record, or
    when its jobs left the queue: runs then still ``running`` count as lost
    (their worker died) and runs never started as cancelled, except a run
    another launch's worker is executing (live heartbeat), which is waited for
    (its final record, or lost once the heartbeat stops).  Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        submission: dict[str, Any],
        run_ids: Sequence[str],
        *,
        progress: bool | None = None,
        on_event: EventCallback | None = None,
        skipped_ids: Sequence[str] = (),
        all_run_ids: Sequence[str] | None = None,
    ) -> None:
        super().__init__(store, str(submission["experiment_id"]))
        self._sub = submission
        #: every run of the submission (queued or skipped), for result()
        self._all_run_ids = tuple(all_run_ids) if all_run_ids is not None else None
        self._run_ids = list(run_ids)
        self._baseline: dict[str, int] = dict(submission.get("baseline") or {})
        self._total = int(submission["total_runs"])
        self._skipped = int(submission.get("skipped", 0))
        self._interval = float((submission.get("config") or {}).get("poll_interval", 1.0))
        self._lock = threading.RLock()
        self._state: dict[str, str] = {}  # run id -> running/success/failed/cancelled/lost
        self._open: set[str] = set(self._run_ids)
        self._elsewhere: set[str] = set()  # open runs another launch's worker was executing at the last poll
        self._queue = {"pending": 0, "running": 0}
        self._queue_empty_polls = 0
        self._finished = threading.Event()
        self._cancelled = bool(submission.get("cancelled"))
        self._last_poll = 0.0
        self._events = EventDispatcher()
        self._on_finish: list[Callable[[], None]] = []
        reporter = progress_reporter(progress, self._experiment_id, self._total, log_lines=False)
        if reporter is not None:
            self._events.add(reporter[0])
            self._on_finish.append(reporter[1])
        if on_event is not None:
            self._events.add(on_event)
        for rid in skipped_ids:
            self._events.emit(
                Event(EventKind.RUN_SKIPPED, rid, self._experiment_id, reason="already succeeded (resume=True)")
            )
        if submission.get("dry_run") or not self._run_ids:
            self._finish()
        self._poller: threading.Thread | None = None
        if (reporter is not None or on_event is not None) and not self._finished.is_set():
            self._poller = threading.Thread(target=self._poll_loop, name="metalab-slurm-poll", daemon=True)
            self._poller.start()

    # ------------------------------------------------------------ properties
    @property
    def submission(self) -> dict[str, Any]:
        """The submission manifest (a copy)."""
        return dict(self._sub)

    @property
    def job_ids(self) -> list[str]:
        return [str(a["job_id"]) for a in self._sub.get("arrays", []) if a.get("job_id")]

    @property
    def job_id(self) -> str:
        """The SLURM array job id (several, comma-separated, when the runs needed several arrays)."""
        return ",".join(self.job_ids) or str(self._sub.get("submission_id", ""))

    @property
    def submission_dir(self) -> str:
        return submission_dir(self._store, str(self._sub["submission_id"]))

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        self._maybe_poll()
        return self._finished.is_set()

    @property
    def status(self) -> RunStatus:
        """Counts from the store's records plus ``squeue`` (polls if the last poll is old).

        A run another launch's worker is executing counts in ``elsewhere``
        (not ``running``) until it ends.
        """
        self._maybe_poll()
        with self._lock:
            return self._counts()

    @property
    def queue(self) -> dict[str, int]:
        """Array tasks ``pending`` / ``running`` in ``squeue`` at the last poll."""
        with self._lock:
            return dict(self._queue)

    # ---------------------------------------------------------------- polling
    def _maybe_poll(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return
        if time.monotonic() - self._last_poll >= min(self._interval, _MIN_POLL_S):
            self.poll()

    def _poll_loop(self) -> None:
        while not self._finished.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("polling SLURM submission %s failed (retrying)", self._sub.get("submission_id"))
            self._finished.wait(self._interval)

    def _squeue(self) -> dict[str, int] | None:
        return queue_counts(self.job_ids)

    def _read_docs(self, run_ids: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if len(run_ids) <= _READ_ONE_BY_ONE_MAX:
            for rid in run_ids:
                try:
                    rec = self._store.get_run_record(rid)
                except Exception as exc:
                    log.warning("could not read run %s: %s", rid, exc)
                    continue
                if rec is not None:
                    out[rid] = rec.to_dict()
            return out
        for doc in self._store.iter_run_documents():
            doc_id = doc.get("run_id")
            if isinstance(doc_id, str) and doc_id in run_ids:
                out[doc_id] = doc
        return out

    def _of_this_submission(self, doc: dict[str, Any]) -> bool:
        """A record written for this submission (a success counts whoever wrote it)."""
        base = self._baseline.get(str(doc.get("run_id")))
        if base is None or doc.get("status") == "success":
            return True
        try:
            return int(doc.get("attempt") or 0) > base
        except (TypeError, ValueError):
            return False

    def poll(self) -> RunStatus:
        """Read the records and the queue once, emit events, return the status."""
        with self._lock:
            if self._finished.is_set():
                return self._status_nolock()
            self._last_poll = time.monotonic()
            queue = self._squeue()
            docs = self._read_docs(set(self._open))
            from metalab.query import DEFAULT_LOST_AFTER_S, effective_status

            now = datetime.now(UTC)
            lost_after = float(self._sub.get("lost_after") or DEFAULT_LOST_AFTER_S)
            ended: list[tuple[str, dict[str, Any], str]] = []
            elsewhere: set[str] = set()  # runs another launch's worker is executing now
            for rid, doc in docs.items():
                if not self._of_this_submission(doc):
                    continue
                status = effective_status(doc, now, lost_after)
                if status == "running":
                    if not self._our_worker(doc):
                        elsewhere.add(rid)
                    if self._state.get(rid) != "running":
                        self._state[rid] = "running"
                        self._events.emit(Event(EventKind.RUN_STARTED, rid, self._experiment_id))
                elif status in _FINAL or status == "lost":
                    ended.append((rid, doc, status))
            ended.sort(key=lambda item: str(item[1].get("finished_at") or item[1].get("heartbeat_at") or ""))
            for rid, doc, status in ended:
                self._end(rid, status, doc)
            if queue is not None:
                self._queue = queue
                if queue["pending"] or queue["running"]:
                    self._queue_empty_polls = 0
                else:
                    self._queue_empty_polls += 1
            # (our jobs gone: what is still open ends now, except runs another
            # launch is executing, whose final record or stopped heartbeat is
            # waited for)
            self._elsewhere = elsewhere
            if not self._open or self._queue_empty_polls >= _EMPTY_QUEUE_POLLS:
                self._settle(keep=elsewhere)
            return self._status_nolock()

    def _our_worker(self, doc: dict[str, Any]) -> bool:
        """Whether the record was written by a task of this submission's jobs
        (worker id ``slurm-<job>_<task>@host``).  Any other worker is another
        launch's: its run is waited for while its heartbeat is live."""
        provenance = doc.get("provenance")
        worker = provenance.get("worker_id") if isinstance(provenance, dict) else None
        if not isinstance(worker, str) or not worker.startswith("slurm-"):
            return False
        job = worker[len("slurm-"):].split("_", 1)[0].split("@", 1)[0]
        return job in self.job_ids

    def _status_nolock(self) -> RunStatus:
        self._last_poll = time.monotonic()
        return self._counts()

    def _counts(self) -> RunStatus:
        counts = {"success": 0, "failed": 0, "cancelled": 0, "running": 0, "lost": 0}
        for state in self._state.values():
            counts[state] += 1
        elsewhere = len(self._elsewhere & self._open)
        running = max(0, counts["running"] - elsewhere)
        done = counts["success"] + counts["failed"] + counts["cancelled"] + counts["lost"] + self._skipped
        return RunStatus(
            total=self._total, done=done, success=counts["success"], failed=counts["failed"],
            cancelled=counts["cancelled"], running=running,
            pending=max(0, self._total - done - running - elsewhere), skipped=self._skipped,
            lost=counts["lost"], elsewhere=elsewhere,
        )

    def _end(self, rid: str, status: str, doc: dict[str, Any] | None, reason: str | None = None) -> None:
        if rid not in self._open:
            return
        if self._state.get(rid) != "running":
            self._events.emit(Event(EventKind.RUN_STARTED, rid, self._experiment_id))
        self._open.discard(rid)
        self._state[rid] = status
        error = None
        if doc is not None and isinstance(doc.get("error"), dict):
            try:
                error = ErrorInfo.from_dict(doc["error"])
            except Exception as exc:  # the event still reports the run's end, without its error
                log.debug("run %s: its record's error is malformed: %s", rid, exc)
                error = None
        kind = {
            "success": EventKind.RUN_FINISHED,
            "failed": EventKind.RUN_FAILED,
            "lost": EventKind.RUN_FAILED,
        }.get(status, EventKind.RUN_CANCELLED)
        if status == "lost" and reason is None:
            reason = "lost: the worker stopped sending heartbeats (killed or node lost); resume to rerun it"
        metrics = doc.get("metrics") if doc is not None and status == "success" else None
        self._events.emit(
            Event(
                kind,
                rid,
                self._experiment_id,
                duration_ms=doc.get("duration_ms") if doc is not None else None,
                metrics=dict(metrics) if isinstance(metrics, dict) else None,
                error=error,
                reason=reason,
            )
        )

    def _settle(self, keep: Set[str] = frozenset()) -> None:
        """The jobs left the queue: account for every run without a final record
        (except ``keep``: runs another launch is executing, unless this
        submission was cancelled); finished when none is left open."""
        if self._cancelled:
            for rid in sorted(self._open & keep):
                self._end(rid, "cancelled", None, reason="this submission was cancelled; "
                          "another launch is executing the run")
        for rid in sorted(self._open - keep):
            if self._state.get(rid) == "running":
                self._end(rid, "lost", None)
            else:
                self._end(rid, "cancelled", None, reason="its array task ended before running it "
                          "(scancel, time limit or a failed task; see the SLURM logs); resume to run it")
        if not self._open:
            self._finish()

    def _finish(self) -> None:
        if self._finished.is_set():
            return
        self._finished.set()
        for cb in self._on_finish:
            try:
                cb()
            except Exception:
                log.exception("finish hook failed (ignored)")

    # ------------------------------------------------------------ public API
    def wait(self, timeout: float | None = None) -> bool:
        """Block until the submission has ended; True if so, False on timeout.

        Never hangs on runs that were skipped or had already ended: completion
        counts final records, and the queue running empty ends it too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            if self._poller is None or not self._poller.is_alive():
                self.poll()
                if self._finished.is_set():
                    break
            step = self._interval if deadline is None else min(self._interval, deadline - time.monotonic())
            if step <= 0:
                return False
            self._finished.wait(step)
        return True

    def _result_run_ids(self) -> Sequence[str] | None:
        return self._all_run_ids

    def cancel(self) -> None:
        """``scancel`` every array of the submission (returns at once; use :meth:`wait`).

        Running workers get SIGTERM and record their run as ``cancelled``;
        queued tasks never start (their runs count as cancelled).
        """
        self._cancelled = True
        scancel(self.job_ids)

    def __repr__(self) -> str:
        st = self.status
        return (
            f"SlurmRunHandle({self._experiment_id!r}, jobs={self.job_ids}, done={st.done}/{st.total}, "
            f"running={st.running}, failed={st.failed}, lost={st.lost})"
        )



def reconnect(
    store: Any,
    experiment_id: str | None = None,
    *,
    progress: bool = False,
    on_event: EventCallback | None = None,
) -> SlurmRunHandle:
    """A handle on the latest SLURM submission of an experiment, from any process.

    ``store`` is what was given to ``metalab.run`` (``None``, a path,
    locator, config or store: see :func:`metalab.store.make_store`).  ``experiment_id`` may be omitted when the store is scoped or
    holds exactly one experiment.

    Raises:
        NotFoundError: no experiment, or its latest submission was not a
            SLURM one.  ValidationError: several experiments and no
            ``experiment_id``.
    """
    from metalab.store import make_store

    if experiment_id is None:
        store = make_store(store)
        experiment_id = store.experiment_id
        if experiment_id is None:
            found = store.list_experiments()
            if len(found) != 1:
                raise ValidationError(
                    f"the store holds {len(found)} experiments ({', '.join(sorted(found)) or 'none'}); "
                    "pass experiment_id='name:version' to reconnect"
                )
            experiment_id = found[0]
    scoped = make_store(store, experiment_id=experiment_id)
    manifest = scoped.get_experiment_manifest(experiment_id)
    sub = (manifest or {}).get("submission")
    if not isinstance(sub, dict) or sub.get("kind") != "slurm":
        raise NotFoundError(
            f"the latest submission of {experiment_id!r} in this store was not made with "
            "SlurmExecutor; nothing to reconnect to"
        )
    sub_path = os.path.join(scoped.get_working_directory(), str(sub["path"]))
    doc = load_submission(sub_path)
    run_ids_all = manifest.get("run_ids") if manifest else None
    ranges = doc["pending"]
    if not isinstance(run_ids_all, list):  # rebuild from the shipped experiment
        path = os.path.join(os.path.dirname(sub_path), doc["experiment_file"])
        exp = load_experiment(path, doc)[0]
        run_ids_all = [spec.run_id for spec in exp.iter_specs()]
    run_ids = [str(run_ids_all[i]) for start, stop in ranges for i in range(start, stop)]
    return SlurmRunHandle(
        scoped, doc, run_ids, progress=progress, on_event=on_event,
        all_run_ids=[str(rid) for rid in run_ids_all],
    )

