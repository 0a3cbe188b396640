"""DaskExecutor: run payloads on a Dask distributed cluster."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import secrets
import threading
from typing import Any

from metalab._errors import MissingDependencyError, ValidationError
from metalab.execution._executors import Executor
from metalab.execution._worker import (
    Job,
    RunPayload,
    StartUnknownError,
    owner_with_token,
    process_entry,
)

__all__ = ["DaskExecutor", "dask_entry"]

log = logging.getLogger("metalab.execution")

#: random bytes (written as hex) of a task's token: its Dask key and its claim owner end in it
_TOKEN_BYTES = 5
#: random bytes (written as hex) of the name of an executor's cancel signal
_SIGNAL_TOKEN_BYTES = 8
_SIGNAL_PREFIX = "metalab-cancel-"


class _CancelSignal:
    """An executor's cancel signal seen from a worker: a ``distributed.Event`` on the
    scheduler, one round trip per look (looked at once per run, never per step)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def is_set(self) -> bool:
        from distributed import Event

        return bool(Event(self.name).is_set())


def dask_entry(payload: RunPayload, cancel_signal: str = "", owner_token: str = "") -> Any:
    """Task run on a Dask worker: one run, no fd redirection (workers are threaded).

    ``cancel_signal`` names the executor's cancel signal (a
    ``distributed.Event``), looked at once right after the run is claimed: if
    it is set, the claim is released and NotStartedError raised, nothing
    written.  The claim's owner ends in ``owner_token``, so the launcher
    recognises the claim of this task.
    """
    check = _CancelSignal(cancel_signal) if cancel_signal else None
    owner = owner_with_token(owner_token) if owner_token else None
    return process_entry(payload, redirect=False, start_check=check, owner=owner)


def _new_signal_name() -> str:
    return _SIGNAL_PREFIX + secrets.token_hex(_SIGNAL_TOKEN_BYTES)


class DaskExecutor(Executor):
    """Runs jobs on Dask distributed workers.

    Args:
        client_or_address: a ``distributed.Client`` (used as is, never
            closed by metalab) or a scheduler address such as
            ``"tcp://10.0.0.5:8786"`` (a client is opened on first use and
            closed by :meth:`shutdown`).

    Jobs travel as the same picklable payloads as :class:`ProcessExecutor`:
    workers reconnect the store from its config (so it must be reachable
    from them: a shared folder or a PostgreSQL store), import the operation
    by reference and unpickle the context.  Runs are claimed and heartbeated
    like everywhere else.  ``print()`` output stays in the worker's own
    output (workers run several threads); use ``capture.log`` or logging.

    :meth:`cancel_running` cancels queued tasks; a run already executing
    finishes and is reported as what it wrote.  A Dask worker cannot stop a
    task that runs, and its future reads "cancelled" on the client at once,
    so such a run ends with :class:`~metalab.execution._worker.StartUnknownError`
    and the handle settles it from the store: the final record the task wrote,
    or its live claim (waited for), or neither (the run did not start).  To
    make the last answer final, :meth:`cancel_running` first sets a cancel
    signal on the scheduler (a ``distributed.Event``, one per batch of
    tasks it cancels; it stays on the scheduler, a few bytes) that every task
    looks at once, right after claiming its run: a task that claims after the
    cancel releases the claim and does not run.  Operations do not see this
    signal (``runtime.cancelled`` stays False on Dask).  Thread-safe.

    Raises:
        MissingDependencyError: ``dask[distributed]`` is not installed
            (``pip install 'metalab[dask]'``), on first use.
    """

    name = "dask"
    in_process = False

    def __init__(self, client_or_address: Any) -> None:
        if not isinstance(client_or_address, str) and not hasattr(client_or_address, "submit"):
            raise ValidationError(
                "DaskExecutor needs a distributed.Client or a scheduler address string such as "
                f"'tcp://127.0.0.1:8786', got {type(client_or_address).__name__}"
            )
        self._target = client_or_address
        self._client: Any = None if isinstance(client_or_address, str) else client_or_address
        self._owns_client = isinstance(client_or_address, str)
        self._lock = threading.Lock()
        self._futures: dict[str, Any] = {}
        # the cancel signal of the tasks submitted since the last cancel_running
        self._signal = _new_signal_name()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    from distributed import Client
                except ImportError as exc:
                    raise MissingDependencyError("dask[distributed]", "dask", "DaskExecutor") from exc
                self._client = Client(self._target)
            return self._client

    def submit(self, job: Job) -> cf.Future[Any]:
        client = self._get_client()
        payload = job.to_payload(self.name)
        token = secrets.token_hex(_TOKEN_BYTES)
        key = f"metalab-{job.run_id}-{token}"
        with self._lock:
            signal = self._signal
        dfut = client.submit(dask_entry, payload, signal, token, key=key, pure=False)
        out: cf.Future[Any] = cf.Future()
        out.set_running_or_notify_cancel()
        with self._lock:
            self._futures[key] = dfut

        def _relay(f: Any) -> None:
            with self._lock:
                self._futures.pop(key, None)
            try:
                if f.status == "finished":
                    out.set_result(f.result())
                elif f.status == "cancelled":
                    out.set_exception(StartUnknownError(
                        f"the Dask task of run {job.run_id} was cancelled; whether it had "
                        "started is settled from the store", job.run_id, token,
                    ))
                else:
                    out.set_exception(f.exception())
            except Exception as exc:  # result transfer failed
                if not out.done():
                    out.set_exception(exc)

        dfut.add_done_callback(_relay)
        return out

    def cancel_running(self) -> None:
        """Cancel the tasks submitted so far (see the class docstring).

        The cancel signal is set before any task is cancelled; if it cannot
        be set (scheduler unreachable), no task is cancelled: they end as
        what they write.  Tasks submitted afterwards get a new signal.
        """
        with self._lock:
            futures = list(self._futures.values())
            client = self._client
            signal, self._signal = self._signal, _new_signal_name()
        if client is None or not futures:
            return
        try:
            from distributed import Event

            Event(signal, client=client).set()
        except Exception:
            log.exception("could not set the cancel signal of the Dask tasks; they are not cancelled")
            return
        try:
            client.cancel(futures)
        except Exception:
            log.exception("cancelling Dask tasks failed (ignored)")

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            client = self._client if self._owns_client else None
            if self._owns_client:
                self._client = None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.exception("closing the Dask client failed (ignored)")

    def __repr__(self) -> str:
        target = self._target if isinstance(self._target, str) else "Client(...)"
        return f"DaskExecutor({target!r})"
