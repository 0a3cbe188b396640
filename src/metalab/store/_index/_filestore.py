"""The FileStore's index: the catalogs of its experiment folders (:class:`CatalogIndex`),
and the scan of the files that answers when a catalog cannot."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol, TypeVar

from metalab._errors import StoreError
from metalab.query._ast import DYNAMIC, Field, Query
from metalab.query._eval import run_query
from metalab.query._liveness import lost_cutoff
from metalab.query._records import parse_record, report_problem
from metalab.store._annotations import FolderAnnotations
from metalab.store._index._catalog import Catalog, CatalogUnavailable, Progress, read_run_file
from metalab.store._index._catalog_table import TABLE_FIXED
from metalab.store._index._catalog_table import run_table as catalog_run_table
from metalab.store._index._catalog_table import status_counts as catalog_status_counts
from metalab.store._index._catalog_table import status_overview as catalog_status_overview
from metalab.store._index._interface import Index

T = TypeVar("T")


class FileStore(Protocol):
    """What the catalog's FileStore side reads of the store it serves (the FileStore:
    named by this interface, not imported, since the FileStore module imports this one)."""

    _run_folders: dict[str, str]

    @property
    def experiment_id(self) -> str | None: ...

    @property
    def read_only(self) -> bool: ...

    def get_working_directory(self) -> str: ...

    def get_derived(self, run_id: str) -> dict[str, Any] | None: ...

    def _child_experiments(self) -> list[tuple[str, str]]: ...

__all__ = ["CatalogIndex", "catalog_folders", "scan_runs"]

log = logging.getLogger("metalab.store.catalog")


def _single_folder(store: FileStore, experiment_id: str | None) -> str | None:
    """The one experiment folder holding every run in scope, or None (then scan)."""
    root = store.get_working_directory()
    if store.experiment_id is not None:
        if experiment_id is None or experiment_id == store.experiment_id:
            return root
        return None
    children = store._child_experiments()
    own_runs = os.path.isdir(os.path.join(root, "runs"))
    if experiment_id is not None:
        matches = [f for f, eid in children if eid == experiment_id]
        return matches[0] if len(matches) == 1 and not own_runs else None
    if not children:
        return root
    if len(children) == 1 and not own_runs:
        return children[0][0]
    return None


def catalog_folders(store: FileStore) -> list[str]:
    """Every experiment folder of the store that has a runs/ folder."""
    root = store.get_working_directory()
    if store.experiment_id is not None:
        return [root]
    folders = [f for f, _ in store._child_experiments()]
    if os.path.isdir(os.path.join(root, "runs")):
        folders.insert(0, root)
    return folders


def scan_runs(store: FileStore, experiment_id: str | None, query: Query) -> list[dict[str, Any]]:
    """Answer ``query`` by reading every record file in scope (the in-memory engine).

    Files that are not run records are skipped and reported, naming each
    file (see :mod:`metalab.query._records`), as the catalog does."""
    from metalab._errors import CorruptRecordError

    def derived_of(doc: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return store.get_derived(doc["run_id"])
        except (CorruptRecordError, ValueError):
            return None

    return run_query(_scan_documents(store, experiment_id), query, derived_of)


def _scan_documents(store: FileStore, experiment_id: str | None) -> Iterator[dict[str, Any]]:
    """The run documents in scope (as ``iter_run_documents``), each file that is not a
    run record reported by its path (the name of a file need not be its run id)."""
    scope = experiment_id if experiment_id is not None else store.experiment_id
    root = store.get_working_directory()
    if store.experiment_id is not None:
        folders: list[tuple[str, bool]] = (
            [(root, False)] if scope == store.experiment_id else [])
    else:  # the root's own runs (older layout) need a look at their experiment id
        folders = [(root, scope is not None)] + [
            (f, False) for f, eid in store._child_experiments() if scope in (None, eid)]
    for folder, check_id in folders:
        runs = os.path.join(folder, "runs")
        try:
            names = sorted(n for n in os.listdir(runs) if n[0] != "." and n.endswith(".json"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        annotated = FolderAnnotations(folder, report_problem).apply  # (tags, notes)
        for name in names:
            path = os.path.join(runs, name)
            got = read_run_file(path)
            if got is None:
                continue  # deleted meanwhile
            doc = parse_record(path, got[0])
            if isinstance(doc, Exception):
                report_problem(doc)
                continue
            if check_id and doc["experiment_id"] != scope:
                continue
            if folder != root:
                store._run_folders[doc["run_id"]] = folder  # (for derived_of)
            yield annotated(doc)


class CatalogIndex(Index):
    """:class:`Index` of a FileStore: one SQLite catalog per experiment folder
    (``.catalog/`` in it, see :mod:`._catalog`).

    It answers queries, counts and run tables (of projected queries) of one
    experiment folder (collections spanning several are scanned by the
    store), never on a read-only store (a refresh would write to the folder).  Each
    call opens the catalogs it needs; a lock file per folder serialises their
    writers across threads and processes.
    """

    def __init__(self, store: FileStore) -> None:
        self._store = store

    def _catalog(self, experiment_id: str | None) -> Catalog | None:
        """The catalog answering for ``experiment_id``, or None (then scan)."""
        store = self._store
        folder = None if store.read_only else _single_folder(store, experiment_id)
        if folder is not None and os.path.isdir(os.path.join(folder, "runs")):
            return Catalog(folder)
        return None

    def _read(self, experiment_id: str | None, what: str,
              answer: Callable[[sqlite3.Connection, dict[tuple[str, str], str]], T]) -> T | None:
        """``answer`` on the refreshed catalog of ``experiment_id`` (see
        :meth:`Catalog.read`), or None when there is none or it is unavailable."""
        catalog = self._catalog(experiment_id)
        if catalog is None:
            return None
        try:
            return catalog.read(answer)
        except CatalogUnavailable as exc:
            log.info("%s by reading the files (catalog unavailable: %s)", what, exc)
        return None

    def select(self, query: Query, experiment_id: str | None) -> list[dict[str, Any]] | None:
        """The catalog's answer (refreshed first from the files that changed), or None."""
        catalog = self._catalog(experiment_id)
        if catalog is not None:
            try:
                return catalog.query(query, lost_cutoff())
            except CatalogUnavailable as exc:
                log.info("querying by scanning the files (catalog unavailable: %s)", exc)
        return None

    def status_counts(self, experiment_id: str | None) -> dict[str, int] | None:
        """The catalog's counts by status (refreshed first, one ``GROUP BY``), or None."""
        cutoff = lost_cutoff()
        scope = experiment_id if experiment_id is not None else self._store.experiment_id
        return self._read(experiment_id, "counting",
                          lambda conn, _fields: catalog_status_counts(conn, cutoff, scope))

    def status_overview(self, experiment_id: str | None,
                        planned: Collection[str] | None) -> dict[str, Any] | None:
        """The catalog's counts, latest times and planned runs recorded (one ``GROUP
        BY``, see :func:`._catalog_table.status_overview`), or None."""
        cutoff = lost_cutoff()
        scope = experiment_id if experiment_id is not None else self._store.experiment_id
        return self._read(experiment_id, "counting", lambda conn, _fields:
                          catalog_status_overview(conn, cutoff, scope, planned))

    def count(self, experiment_id: str | None, status: str | None) -> int | None:
        """The catalog's count (``status``: as readers see it, ``lost`` included), or None."""
        counts = self.status_counts(experiment_id)
        if counts is None:
            return None
        return sum(counts.values()) if status is None else counts.get(status, 0)

    def table(self, experiment_id: str | None, query: Query | None) -> dict[str, Any] | None:
        """The runs of ``query`` as columns from the catalog (see :mod:`._catalog_table`),
        or None: a load of whole records (no ``columns``, or a column the catalog
        does not keep), or no catalog.

        Raises:
            UnknownFieldError: ``query`` names a field no run has.
        """
        if query is None or query.columns is None or any(
                f.ns not in DYNAMIC and f.ns not in TABLE_FIXED for f in query.columns):
            return None
        cutoff = lost_cutoff()
        scope = experiment_id if experiment_id is not None else self._store.experiment_id
        return self._read(experiment_id, "loading", lambda conn, fields: catalog_run_table(
            conn, fields, query, cutoff, scope))

    def aggregate(self, experiment_id: str | None, query: Query, by: list[Field],
                  values: list[Field]) -> list[dict[str, Any]] | None:
        from metalab.store._index._aggregate import filestore_aggregate

        return filestore_aggregate(self._store, _single_folder(self._store, experiment_id),
                                   query, by, values)

    def histogram(self, experiment_id: str | None, query: Query, value: Field,
                  group: Field | None, edges: Any) -> list[dict[str, Any]] | None:
        from metalab.store._index._histogram import filestore_histogram

        return filestore_histogram(self._store, _single_folder(self._store, experiment_id),
                                   query, value, group, edges)

    def sample(self, experiment_id: str | None, query: Query, x: Field, y: Field,
               group: Field | None, limit: int) -> dict[str, Any] | None:
        from metalab.store._index._sample import filestore_sample

        return filestore_sample(self._store, _single_folder(self._store, experiment_id),
                                query, x, y, group, limit)

    def refresh(self, progress: Progress | None = None) -> int:
        """Refresh the catalog of every experiment folder; returns the files read.

        Raises:
            StoreError: a catalog cannot be written (e.g. a read-only folder).
        """
        return self._each_catalog(progress, rebuild=False)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Rebuild the catalog of every experiment folder; returns the files read.

        Raises:
            StoreError: a catalog cannot be written (e.g. a read-only folder).
        """
        return self._each_catalog(progress, rebuild=True)

    def _each_catalog(self, progress: Progress | None, *, rebuild: bool) -> int:
        total = 0
        for folder in catalog_folders(self._store):
            try:
                total += Catalog(folder).refresh(progress, rebuild=rebuild)
            except CatalogUnavailable as exc:
                what = "rebuild" if rebuild else "refresh"
                raise StoreError(
                    f"cannot {what} the query catalog of {folder}: {exc}. Queries still work "
                    "(they scan the files); make the folder writable to speed them up"
                ) from exc
        return total
