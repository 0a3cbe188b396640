"""FileStore queries: answered from the catalog of one experiment folder, else by a scan."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import StoreError
from metalab.store._query._ast import Query
from metalab.store._query._catalog import Catalog, CatalogUnavailable, Progress
from metalab.store._query._eval import lost_cutoff
from metalab.store._query._parser import build_query

if TYPE_CHECKING:
    from metalab.store._file import FileStore

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
    """:meth:`Store.query_runs` for a FileStore (catalog first, scan as fallback)."""
    from metalab.store._base import Store

    query = where if isinstance(where, Query) else build_query(
        where, columns=columns, order_by=order_by, limit=limit
    )
    folder = _single_folder(store, experiment_id)
    if folder is not None and os.path.isdir(os.path.join(folder, "runs")):
        try:
            return Catalog(folder).query(query, lost_cutoff())
        except CatalogUnavailable as exc:
            log.info("querying by scanning the files (catalog unavailable: %s)", exc)
    return Store.query_runs(store, experiment_id, query)


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
