"""Runtime: the non-reproducible plumbing an operation may ask for."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from metalab._errors import RunCancelledError

__all__ = ["CancelFlag", "Runtime"]


class CancelFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or a multiprocessing Event."""

    def is_set(self) -> bool: ...


class Runtime:
    """Per-run runtime information handed to operations that declare ``runtime``.

    Attributes:
        run_id, experiment_id, worker_id: who is running what.
        metadata: the experiment's ``metadata`` (not part of run identity).

    ``scratch_dir`` is a private temporary folder created on first access and
    deleted (with everything in it) when the run ends; save what you want to
    keep with ``capture.artifact``.  Not shared between threads of other runs.
    """

    def __init__(
        self,
        run_id: str,
        experiment_id: str,
        worker_id: str = "",
        metadata: dict[str, Any] | None = None,
        cancel_flag: CancelFlag | None = None,
    ) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.worker_id = worker_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._cancel_flag = cancel_flag
        self._scratch: Path | None = None
        self._lock = threading.Lock()

    @property
    def scratch_dir(self) -> Path:
        """A temporary folder for this run (deleted after the run)."""
        with self._lock:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix=f"metalab-{self.run_id}-"))
            return self._scratch

    @property
    def cancelled(self) -> bool:
        """True once cancellation of the submission was requested."""
        return bool(self._cancel_flag is not None and self._cancel_flag.is_set())

    def check_cancelled(self) -> None:
        """Raise :class:`~metalab.RunCancelledError` if cancellation was requested.

        Call it at safe points of a long operation; the run then ends with a
        ``cancelled`` record.
        """
        if self.cancelled:
            raise RunCancelledError(
                f"run {self.run_id} was cancelled (handle.cancel() or Ctrl-C); "
                "rerun the experiment with resume=True to finish it"
            )

    def _cleanup(self) -> None:
        with self._lock:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None

    def __repr__(self) -> str:
        return f"Runtime(run_id={self.run_id!r}, worker_id={self.worker_id!r})"
