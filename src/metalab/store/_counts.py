"""Counting an experiment's runs by status (:meth:`Store.status_counts`).

From the store's query index when it can answer (the FileStore catalog, the
PostgreSQL tables: one ``GROUP BY``), else by reading every run document; both
judge ``lost`` at one instant (:func:`~metalab.query.lost_cutoff`) by the one
rule of :mod:`metalab.query._liveness`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from metalab.query._liveness import lost_cutoff, status_at_cutoff

if TYPE_CHECKING:
    from metalab.store._base import Store

__all__ = ["status_counts"]


def status_counts(store: Store, experiment_id: str | None) -> dict[str, int]:
    """``{status: runs}`` of the runs in ``store``'s scope (see :meth:`Store.status_counts`)."""
    from metalab.store._index._interface import Index

    index = getattr(store, "_query_index", None)  # (the stores that have an index)
    if isinstance(index, Index):
        counted = index.status_counts(experiment_id)
        if counted is not None:
            return counted
    cutoff = lost_cutoff()
    found = Counter(status_at_cutoff(doc, cutoff) for doc in store.iter_run_documents(experiment_id))
    return {status: n for status, n in found.items() if status is not None}
