"""DaskExecutor: run payloads on a Dask distributed cluster."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import uuid
from typing import Any

from metalab._errors import MissingDependencyError, ValidationError
from metalab.execution._executors import Executor
from metalab.execution._worker import Job, RunPayload, process_entry

__all__ = ["DaskExecutor", "dask_entry"]

log = logging.getLogger("metalab.execution")

#: random hex characters that make a run's Dask task key unique across submissions
_KEY_TOKEN_CHARS = 8


def dask_entry(payload: RunPayload) -> Any:
    """Task run on a Dask worker: one run, no fd redirection (workers are threaded)."""
    return process_entry(payload, redirect=False)


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
    finishes.  Thread-safe.

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
        key = f"metalab-{job.run_id}-{uuid.uuid4().hex[:_KEY_TOKEN_CHARS]}"
        dfut = client.submit(dask_entry, payload, key=key, pure=False)
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
                    from metalab.execution._worker import NotStartedError

                    out.set_exception(NotStartedError(f"run {job.run_id} was cancelled before it started"))
                else:
                    out.set_exception(f.exception())
            except Exception as exc:  # result transfer failed
                if not out.done():
                    out.set_exception(exc)

        dfut.add_done_callback(_relay)
        return out

    def cancel_running(self) -> None:
        with self._lock:
            futures = list(self._futures.values())
            client = self._client
        if client is not None and futures:
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
