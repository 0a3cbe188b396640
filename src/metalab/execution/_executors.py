"""Executors: where runs execute.

An :class:`Executor` takes a whole submission (:meth:`Executor.submit_batch`,
a :class:`~metalab.execution._batch.Batch`) and returns its
:class:`~metalab.execution._handle.Handle`.  Executors of single runs
(serial, thread, process, Dask) keep the default, which turns each pending
run into a :class:`~metalab.execution._worker.Job` and calls
:meth:`Executor.submit` for it: a future per run
(``concurrent.futures.Future``-like: ``done()``, ``result()``,
``exception()``, ``cancel()``, ``add_done_callback()``).  Out-of-process
executors ship ``job.to_payload(name)`` and run
:func:`~metalab.execution._worker.process_entry` remotely.  A cluster
executor that schedules whole submissions (SLURM) overrides
:meth:`~Executor.submit_batch` and returns its own handle.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from metalab._errors import ValidationError
from metalab.execution._batch import Batch, launch_local
from metalab.execution._handle import Handle
from metalab.execution._worker import Job, process_entry, process_initializer

__all__ = ["Executor", "ProcessExecutor", "SerialExecutor", "ThreadExecutor"]

log = logging.getLogger("metalab.execution")

#: seconds to wait for the start-notification listener thread when a process pool shuts down
_LISTENER_JOIN_S = 5


class Executor(abc.ABC):
    """Runs the runs of a submission and hands back its handle.

    Contract (checked by :class:`metalab.testing.ExecutorContractTests`):
    :meth:`submit_batch` stores the experiment manifest, starts (or queues)
    every pending run of the batch and returns a
    :class:`~metalab.execution.Handle`; every run ends in the store with its
    status (failures recorded), runs another launch holds are never executed
    twice.  :meth:`submit` returns a future whose result is the final
    ``RunRecord`` of one run (or whose exception explains why it could not be
    executed).  :meth:`shutdown` releases workers and may be called several
    times; a shut-down executor may be used again (it starts new workers).
    Executors are context managers.
    """

    #: short name recorded in provenance and manifests
    name: str = "executor"
    #: runs execute in this process (jobs are not pickled)
    in_process: bool = True
    #: runs execute in the calling thread: ``submit_batch`` returns when every run has ended
    runs_in_caller: bool = False

    @abc.abstractmethod
    def submit(self, job: Job) -> cf.Future[Any]:
        """Start (or queue) ``job`` and return its future."""

    def submit_batch(self, batch: Batch) -> Handle:
        """Store the manifest, submit every pending run of ``batch``, return the handle.

        The default makes a :class:`~metalab.execution.RunHandle` and calls
        :meth:`submit` once per pending run (see
        :func:`~metalab.execution._batch.launch_local` for what it raises).
        """
        return launch_local(self, batch)

    def shutdown(self, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Release workers (idempotent)."""

    def cancel_running(self) -> None:  # noqa: B027 - optional hook
        """Tell runs already executing elsewhere (other processes) that the submission is cancelled."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SerialExecutor(Executor):
    """Runs each job at once, in the calling thread (the default).

    ``submit`` returns only when the run has ended, so ``metalab.run`` with
    this executor executes every run before it returns.
    """

    name = "serial"
    runs_in_caller = True

    def submit(self, job: Job) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(job.run(self.name, "serial-0"))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


def _check_workers(max_workers: int) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValidationError(f"max_workers must be a positive int, got {max_workers!r}")
    return max_workers


class ThreadExecutor(Executor):
    """Runs jobs on a pool of ``max_workers`` threads of this process.

    Good for operations that release the GIL (I/O, numpy).  Each run's Python
    logging, ``print()`` output and warnings go to its own logs
    (context-variable routing, see :mod:`metalab.execution._stdio`), and are
    still shown on the terminal; output of threads an operation starts
    itself is not captured.
    """

    name = "thread"

    def __init__(self, max_workers: int = 4) -> None:
        self.max_workers = _check_workers(max_workers)
        self._pool: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix="metalab")
            return self._pool

    def submit(self, job: Job) -> cf.Future[Any]:
        return self._get_pool().submit(_thread_entry, job, self.name)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"


def _thread_entry(job: Job, name: str) -> Any:
    worker_id = f"thread-{threading.current_thread().name.rsplit('_', 1)[-1]}"
    return job.run(name, worker_id)


class ProcessExecutor(Executor):
    """Runs jobs in ``max_workers`` worker processes (``spawn`` start method).

    Jobs travel as picklable payloads: the worker reconnects the store from
    its config, imports the operation by its ``module:qualname`` reference
    (it must be importable in a fresh interpreter: not defined in
    ``__main__`` of an interactive session or inside a function), and
    receives the context pickled.  Each run's stdout/stderr (file
    descriptors 1 and 2, so C extensions are captured too) go to the run's
    ``stdout``/``stderr`` logs.
    """

    name = "process"
    in_process = False

    def __init__(self, max_workers: int = 4) -> None:
        self.max_workers = _check_workers(max_workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self._cancel_event: Any = None
        self._queue: Any = None
        self._listener: threading.Thread | None = None
        self._started_callbacks: dict[str, Callable[[str, str, datetime], None]] = {}
        self._ids = itertools.count()
        self._closers: list[threading.Thread] = []

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._cancel_event = self._ctx.Event()
                self._queue = self._ctx.SimpleQueue()
                self._pool = cf.ProcessPoolExecutor(
                    self.max_workers,
                    mp_context=self._ctx,
                    initializer=process_initializer,
                    initargs=(self._queue, self._cancel_event),
                )
                self._listener = threading.Thread(
                    target=self._listen, args=(self._queue,), name="metalab-process-events", daemon=True
                )
                self._listener.start()
            return self._pool

    def _listen(self, queue: Any) -> None:
        while True:
            try:
                item = queue.get()
            except (EOFError, OSError):
                return
            if item is None:
                return
            run_id, worker_id, at = item
            cb = self._started_callbacks.get(run_id)
            if cb is not None:
                try:
                    cb(run_id, worker_id, at)
                except Exception:
                    log.exception("start notification of run %s failed (ignored)", run_id)

    def submit(self, job: Job) -> cf.Future[Any]:
        pool = self._get_pool()
        payload = job.to_payload(self.name)
        if job.on_started is not None:
            self._started_callbacks[job.run_id] = job.on_started
        fut = pool.submit(process_entry, payload)
        run_id = job.run_id

        def _forget(_f: cf.Future[Any]) -> None:
            self._started_callbacks.pop(run_id, None)

        fut.add_done_callback(_forget)
        return fut

    def cancel_running(self) -> None:
        with self._lock:
            if self._cancel_event is not None:
                self._cancel_event.set()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers (idempotent).

        ``wait=False`` returns at once; a background thread then waits for
        the workers to exit, keeping the queues they were started with alive
        until then (workers still starting would otherwise fail to attach to
        them and print tracebacks).  ``wait=True`` also waits for such
        earlier shutdowns.
        """
        with self._lock:
            pool, self._pool = self._pool, None
            parts = (self._queue, self._cancel_event, self._listener)
            self._queue = self._listener = None
        if pool is not None:
            if wait:
                _close_pool(pool, *parts)
            else:
                closer = threading.Thread(
                    target=_close_pool, args=(pool, *parts), name="metalab-process-shutdown",
                    daemon=True,
                )
                closer.start()
                with self._lock:
                    self._closers = [t for t in self._closers if t.is_alive()] + [closer]
        if wait:
            with self._lock:
                closers, self._closers = self._closers, []
            for t in closers:
                if t is not threading.current_thread():
                    t.join()

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"


def _close_pool(pool: cf.ProcessPoolExecutor, queue: Any, cancel_event: Any, listener: Any) -> None:
    """Wait for the workers of ``pool`` to exit, then stop its event listener.

    ``queue`` and ``cancel_event`` are held until the workers have exited:
    dropping them earlier unlinks their semaphores while workers may still
    be starting.
    """
    pool.shutdown(wait=True, cancel_futures=True)
    if queue is not None:
        try:
            queue.put(None)
        except (OSError, ValueError):
            pass
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=_LISTENER_JOIN_S)
    del cancel_event
