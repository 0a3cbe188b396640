"""FileStore queries: answered from the catalog of one experiment folder, else by a scan."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from metalab._errors import StoreError
from metalab.query._ast import Query
from metalab.query._eval import run_query
from metalab.query._liveness import lost_cutoff
from metalab.query._parser import as_query
from metalab.query._records import parse_record, report_problem
from metalab.store._index._catalog import Catalog, CatalogUnavailable, Progress, read_run_file


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

__all__ = ["catalog_folders", "query_filestore", "reindex_filestore"]

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


def query_filestore(
    store: FileStore,
    experiment_id: str | None,
    where: Any,
    columns: Sequence[str] | None,
    order_by: Sequence[str] | str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """:meth:`Store.query_runs` for a FileStore (catalog first, scan as fallback).

    Files that are not run records are skipped and reported, naming each
    file (see :mod:`metalab.query._records`), by both ways.  A read-only
    store always scans: refreshing the catalog would write to the folder.
    """
    query = as_query(where, columns, order_by, limit)
    folder = None if store.read_only else _single_folder(store, experiment_id)
    if folder is not None and os.path.isdir(os.path.join(folder, "runs")):
        try:
            return Catalog(folder).query(query, lost_cutoff())
        except CatalogUnavailable as exc:
            log.info("querying by scanning the files (catalog unavailable: %s)", exc)
    return _scan(store, experiment_id, query)


def _scan(store: FileStore, experiment_id: str | None, query: Query) -> list[dict[str, Any]]:
    """Answer ``query`` by reading every record file in scope (the in-memory engine)."""
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
            yield doc


def reindex_filestore(store: FileStore, progress: Progress | None = None) -> int:
    """Rebuild the catalog of every experiment folder; returns the files read.

    Raises:
        StoreError: a catalog cannot be written (e.g. a read-only folder).
    """
    total = 0
    for folder in catalog_folders(store):
        try:
            total += Catalog(folder).refresh(progress, rebuild=True)
        except CatalogUnavailable as exc:
            raise StoreError(
                f"cannot rebuild the query catalog of {folder}: {exc}. Queries still work "
                "(they scan the files); make the folder writable to speed them up"
            ) from exc
    return total
