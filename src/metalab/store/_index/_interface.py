"""The one interface of a store's query index: what both engines offer their store.

A store is "files + one index": the files are the source of truth, the
index (the FileStore's SQLite catalog, :mod:`._filestore`; the
PostgresStore's tables, :mod:`._pgquery`) is a rebuildable copy that answers
queries faster.  The store calls its index only through :class:`Index`;
where the index cannot answer it says so (``None``) and the store reads its
files instead, with the same answers.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from typing import Any

from metalab.query._ast import Field, Query
from metalab.store._base import Progress

__all__ = ["Index"]


class Index(abc.ABC):
    """The query index of one store.

    Every answer is the answer the files would give (the in-memory engine of
    :mod:`metalab.query` over the store's run documents); ``None`` means
    "this index cannot answer now (unreachable, behind the files, not
    applicable): read the files".  Scope: the store's, as in
    :meth:`~metalab.store.Store.query_runs` (an ``experiment_id`` outside a
    scoped store's experiment selects nothing).

    Thread/process safety: every method may be called from several threads
    and processes at once; each engine serialises what it must itself (the
    catalog with a lock file per experiment folder, PostgreSQL with
    transactions and its store's catch-up lock).
    """

    @abc.abstractmethod
    def refresh(self, progress: Progress | None = None) -> int:
        """Bring the index up to date with the files (the changes since it last looked).

        Returns how much was brought over, in the store's ``index_unit``.

        Raises:
            StoreError: the index cannot be written or reached
                (:class:`~metalab.IndexUnavailableError`: it cannot be reached).
        """

    @abc.abstractmethod
    def select(self, query: Query, experiment_id: str | None) -> list[dict[str, Any]] | None:
        """The run documents (or projected rows) of ``query``; None: read the files.

        Raises:
            UnknownFieldError: ``query`` names a field no run in scope has.
        """

    @abc.abstractmethod
    def count(self, experiment_id: str | None, status: str | None) -> int | None:
        """The number of runs in scope (with ``status`` if given); None: count the files.

        Raises nothing of its own: an index that fails answers None.
        """

    def status_counts(self, experiment_id: str | None) -> dict[str, int] | None:
        """``{status: runs}`` of the runs in scope, by the status a reader sees (a
        ``running`` run whose heartbeat is older than the lost limit counts as
        ``lost``; statuses with no run are absent); None: count the files.

        This default answers None.  Raises nothing of its own: an index that
        fails answers None.
        """
        return None

    def status_overview(self, experiment_id: str | None,
                        planned: Collection[str] | None) -> dict[str, Any] | None:
        """:meth:`status_counts` and the latest times in one pass (the answer
        :meth:`~metalab.store.Store.status_overview` describes); None: read the files.

        This default answers None.  Raises nothing of its own: an index that
        fails answers None.
        """
        return None

    @abc.abstractmethod
    def table(self, experiment_id: str | None, query: Query | None) -> dict[str, Any] | None:
        """The runs of ``query`` as columns (see :meth:`~metalab.store.Store.run_table`);
        None: read the files.

        Raises:
            UnknownFieldError: ``query`` names a field no run in scope has.
        """

    def aggregate(self, experiment_id: str | None, query: Query, by: list[Field],
                  values: list[Field]) -> list[dict[str, Any]] | None:
        """The runs of ``query`` grouped by the values of ``by``, with statistics of
        each field of ``values`` per group (see :meth:`~metalab.store.Store.aggregate_runs`);
        None: this index cannot (load the runs instead).

        Raises:
            UnknownFieldError: ``query`` names a field no run in scope has.
        """
        return None

    def histogram(self, experiment_id: str | None, query: Query, value: Field,
                  group: Field | None, edges: Any) -> list[dict[str, Any]] | None:
        """The range of ``value`` and its counts per bin over the runs of ``query``,
        per value of ``group`` (see :meth:`~metalab.store.Store.histogram_runs`);
        None: this index cannot (load the runs instead).

        This default answers None.

        Raises:
            UnknownFieldError: ``query`` names a field no run in scope has.
            ValidationError: ``edges`` gave unusable bin edges.
        """
        return None

    def sample(self, experiment_id: str | None, query: Query, x: Field, y: Field,
               group: Field | None, limit: int) -> dict[str, Any] | None:
        """The runs of ``query`` by class of their x and y values (per value of
        ``group``) and, when more than ``limit`` have finite x and y, a fixed
        sample of ``limit`` of them (see :meth:`~metalab.store.Store.sample_runs`);
        None: this index cannot (load the runs instead).

        This default answers None.

        Raises:
            UnknownFieldError: ``query`` names a field no run in scope has.
        """
        return None

    @abc.abstractmethod
    def rebuild(self, progress: Progress | None = None) -> int:
        """Rebuild the index of the store's scope from the files alone.

        Returns how much was read or indexed, in the store's ``index_unit``.

        Raises:
            StoreError: the index cannot be written
                (:class:`~metalab.IndexUnavailableError`: it cannot be reached).
        """
