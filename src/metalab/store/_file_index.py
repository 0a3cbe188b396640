"""Column-wise reads of the FileStore through its query catalog, mixed into
:class:`~metalab.store.FileStore`: :meth:`FileIndexReads.run_table` (the
catalog's columnar answer, see :mod:`metalab.store._index._catalog_table`) and
:meth:`FileIndexReads.read_run_documents` (record documents of many runs, read
from their files).

Thread/process safety: as the store's reads (each call opens what it reads).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from metalab._internal._names import check_name
from metalab.store._base import warn_corrupt

__all__ = ["FileIndexReads"]

if TYPE_CHECKING:
    from metalab.store._index._interface import Index


class FileIndexReads:
    """The run-table methods of :class:`~metalab.store.FileStore` (a mixin: it uses
    the store's ``_query_index``, ``_folder(run_id)`` and ``_annotated``)."""

    if TYPE_CHECKING:
        @property
        def _query_index(self) -> Index: ...

        def _folder(self, run_id: str) -> str: ...

        @staticmethod
        def _annotated(folder: str, doc: dict[str, Any]) -> dict[str, Any]: ...

    def run_table(self, experiment_id: str | None = None, query: Any = None
                  ) -> dict[str, Any] | None:
        """The runs of ``query`` (a parsed query with ``columns``) as columns from the
        experiment folder's catalog (refreshed first), else None.

        Used by :func:`~metalab.analysis.load_results`; the layout is
        :meth:`~metalab.store.Store.run_table`'s.  None: a load of whole records,
        a collection spanning several folders, a read-only store or an
        unavailable catalog (read the files instead).

        Raises:
            UnknownFieldError: ``query`` names a field no run has.
        """
        return self._query_index.table(experiment_id, query)

    def read_run_documents(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Record documents (with their tags and notes) of many ``(experiment_id,
        run_id)`` runs, read from their files; runs without a file are absent, and an
        unreadable file is reported (a warning naming it) and absent."""
        from metalab._errors import CorruptRecordError, InvalidNameError
        from metalab.store._index._catalog import read_record

        out: dict[tuple[str, str], dict[str, Any]] = {}
        for eid, rid in keys:
            try:
                check_name(rid, "run id")
            except InvalidNameError:
                continue  # (no file can have that name)
            folder = self._folder(rid)
            doc = read_record(os.path.join(folder, "runs", f"{rid}.json"))
            if isinstance(doc, CorruptRecordError):
                warn_corrupt(doc)
            elif doc is not None and doc.get("experiment_id") == eid:
                out[(eid, rid)] = self._annotated(folder, doc)
        return out
