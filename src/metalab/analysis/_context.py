"""Shared state of a family of Results: stores per experiment and the derived cache.

A :class:`Results` and every collection derived from it (slices, filters)
share one :class:`ResultsContext`, so derived values computed through one of
them are visible through all of them, and per-experiment stores are connected
once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from metalab._errors import CorruptRecordError, ScopeError
from metalab._internal._atomic import is_temp_name
from metalab._internal._json import decode_values
from metalab.store import Store, make_store

__all__ = ["ResultsContext"]

log = logging.getLogger("metalab.analysis")


class ResultsContext:
    """Stores by experiment id plus a lazily loaded derived-metrics cache.

    Thread-safe: lookups and cache loading take an internal lock.
    """

    def __init__(
        self,
        store: Store,
        *,
        report: Callable[[CorruptRecordError], None] | None = None,
    ) -> None:
        self.store = store
        self._stores: dict[str, Store] = {}
        self._lock = threading.RLock()
        # (experiment_id, run_id) -> derived values; experiments already scanned
        self._derived: dict[tuple[str, str], dict[str, Any]] = {}
        self._scanned: set[str] = set()
        self._report = report

    # ----------------------------------------------------------------- stores
    def store_for(self, experiment_id: str) -> Store:
        """The store holding the files of ``experiment_id``'s runs.

        A scoped store serves its own runs; an unscoped one is scoped to the
        experiment (connected once, then reused) unless it is the experiment's
        own folder.
        """
        base = self.store
        if base.is_scoped:
            return base
        with self._lock:
            found = self._stores.get(experiment_id)
            if found is None:
                found = _scoped_store(base, experiment_id)
                self._stores[experiment_id] = found
            return found

    # ---------------------------------------------------------------- derived
    def derived_of(self, experiment_id: str, run_id: str) -> dict[str, Any] | None:
        """Cached derived values if this experiment was scanned, else read one run."""
        key = (experiment_id, run_id)
        with self._lock:
            if experiment_id in self._scanned or key in self._derived:
                return self._derived.get(key)
        return self._read_one(experiment_id, run_id)

    def set_derived(self, experiment_id: str, run_id: str, values: dict[str, Any]) -> None:
        """Keep ``values`` as the run's derived values (stored texts of
        non-finite numbers, ``"Infinity"`` ..., become the floats)."""
        with self._lock:
            self._derived[(experiment_id, run_id)] = decode_values(values)

    def _read_one(self, experiment_id: str, run_id: str) -> dict[str, Any] | None:
        try:
            value = self.store_for(experiment_id).get_derived(run_id)
        except CorruptRecordError as exc:
            self._problem(exc)
            return None
        return dict(decode_values(value)) if value is not None else None

    def _problem(self, exc: CorruptRecordError) -> None:
        if self._report is not None:
            self._report(exc)
        else:
            log.warning("skipping unreadable derived file: %s", exc)

    def derived_snapshot(self) -> dict[tuple[str, str], dict[str, Any]]:
        """All derived values known so far, keyed by ``(experiment_id, run_id)``."""
        with self._lock:
            return dict(self._derived)

    def load_derived(
        self, experiments: Iterable[str], run_ids_of: Callable[[str], set[str]]
    ) -> None:
        """Read the derived values of ``experiments``' runs once (later calls are free).

        With a working directory one listing of its ``derived/`` folder tells
        which runs have values, and only those are read (through
        ``store.get_derived``); ``run_ids_of(experiment_id)`` is then called
        only if the folder is not empty.  Other stores are asked once per run.
        Unreadable files are reported and skipped.
        """
        for experiment_id in experiments:
            with self._lock:
                if experiment_id in self._scanned:
                    continue
            store = self.store_for(experiment_id)
            present = _derived_files(store)
            candidates = run_ids_of(experiment_id) if present is None or present else set()
            if present is not None:
                candidates &= present
            found: dict[tuple[str, str], dict[str, Any]] = {}
            for run_id in sorted(candidates):
                try:
                    value = store.get_derived(run_id)
                except CorruptRecordError as exc:
                    self._problem(exc)
                    continue
                if value is not None:
                    found[(experiment_id, run_id)] = dict(decode_values(value))
            with self._lock:
                if experiment_id in self._scanned:
                    continue
                for key, value in found.items():
                    self._derived.setdefault(key, value)
                self._scanned.add(experiment_id)


def _scoped_store(base: Store, experiment_id: str) -> Store:
    """A store scoped to ``experiment_id`` if it holds data, else ``base``.

    ``base`` is kept when it is itself the experiment's folder opened
    without a scope (its own runs are then found through it).
    """
    try:
        scoped = make_store(base, experiment_id=experiment_id)
    except (ScopeError, NotImplementedError):  # pragma: no cover - odd backends
        return base
    if not isinstance(scoped, Store):  # pragma: no cover - odd backends
        return base
    try:
        if experiment_id in scoped.list_experiments():
            return scoped
    except NotImplementedError:  # pragma: no cover
        pass
    scoped.close()
    return base


def _derived_files(store: Store) -> set[str] | None:
    """Run ids with a ``derived/{run_id}.json`` file, or ``None`` if unknown."""
    if not store.supports_working_directory:
        return None
    try:
        folder = os.path.join(store.get_working_directory(), "derived")
    except NotImplementedError:  # pragma: no cover - flag set but not implemented
        return None
    try:
        with os.scandir(folder) as entries:
            return {
                e.name[:-5]
                for e in entries
                if e.name.endswith(".json") and not is_temp_name(e.name)
            }
    except FileNotFoundError:
        return set()
    except OSError:  # pragma: no cover - unreadable folder: fall back to asking per run
        return None
