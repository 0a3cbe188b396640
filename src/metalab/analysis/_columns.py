"""Column-wise runs read from a query index (``PostgresStore.run_table``).

A :class:`RunTable` holds one Python list per field (run ids, statuses,
times, each parameter and metric), in the order of the
:class:`~metalab.analysis.Results` built on it.  Tables are made from these
lists directly; per-run documents are built only when a run is looked at,
and the verbatim record documents (provenance, artifacts, error, seed,
series ...) are fetched from the store in batches only when a run's full
record is needed (see :meth:`RunTable.full_documents`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from metalab._internal._gc import gc_paused
from metalab._internal._json import decode_list, decode_values

__all__ = ["PARTIAL", "RunTable"]

#: key of a per-run document built from a table: ``(table, row)``; such a
#: document holds only what the index has (see :meth:`RunTable.row_document`)
PARTIAL = "\x00metalab.partial"
#: runs per batch when full record documents are fetched
RECORD_BATCH = 5000

Fetch = Callable[[list[tuple[str, str]]], dict[tuple[str, str], dict[str, Any]]]
#: the namespaces whose stored values may be non-finite numbers in text form
_NUMBERS = frozenset({"metrics", "derived"})


def _decoded(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record document with its metrics as Python values (see :func:`decode_values`)."""
    if doc is None or type(metrics := doc.get("metrics")) is not dict:
        return doc
    values = decode_values(metrics)
    return doc if values is metrics else {**doc, "metrics": values}


class _Source:
    """Where full record documents come from, shared by a table and its slices."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.lock = threading.Lock()
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}


class RunTable:
    """Runs as columns.  Immutable; slices share the record cache.

    ``fixed`` maps top-level fields (``run_id``, ``experiment_id``,
    ``status``, ``started_at`` ...) to lists; ``fields`` maps ``(namespace,
    name)`` of params / metrics / derived values to lists (``None`` where a
    run has no value).  Fields absent from ``fixed`` read as ``None``.
    """

    __slots__ = ("_by_ns", "_n", "_source", "fields", "fixed", "objects", "projected")

    def __init__(
        self,
        n: int,
        fixed: dict[str, list[Any]],
        fields: dict[tuple[str, str], list[Any]],
        source: _Source,
        projected: bool,
        objects: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self._n = n
        self.fixed = fixed
        self.fields = fields
        self.objects = objects or {}
        self._source = source
        self.projected = projected
        self._by_ns: list[tuple[str, list[tuple[str, list[Any]]]]] | None = None

    @classmethod
    def from_index(cls, answer: dict[str, Any], fetch: Fetch) -> RunTable:
        """Build from the answer of ``PostgresStore.run_table``.

        Metrics and derived values stored as ``"Infinity"``, ``"-Infinity"``
        or ``"NaN"`` become those floats (the answer holds stored values).
        """
        n = int(answer["n"])
        fixed = dict(answer["fixed"])
        if "experiment_id" not in fixed:
            fixed["experiment_id"] = [answer["experiment_id"]] * n
        fields = dict(answer["fields"])
        objects = dict(answer.get("objects") or {})
        if answer.get("number_texts", True):  # (False: the index's texts hold none)
            fields = {key: decode_list(values) if key[0] in _NUMBERS else values
                      for key, values in fields.items()}
            objects = {ns: [decode_values(m) if type(m) is dict else m for m in maps]
                       if ns in _NUMBERS else maps for ns, maps in objects.items()}
        return cls(n, fixed, fields, _Source(fetch), bool(answer["projected"]), objects)

    def __len__(self) -> int:
        return self._n

    def column(self, name: str) -> list[Any]:
        found = self.fixed.get(name)
        return found if found is not None else [None] * self._n

    def take(self, rows: Sequence[int] | slice) -> RunTable:
        """The table of ``rows`` (positions, in that order, or a slice)."""
        if isinstance(rows, slice):
            fixed = {k: v[rows] for k, v in self.fixed.items()}
            fields = {k: v[rows] for k, v in self.fields.items()}
            objects = {k: v[rows] for k, v in self.objects.items()}
            n = len(range(*rows.indices(self._n)))
        else:
            fixed = {k: [v[i] for i in rows] for k, v in self.fixed.items()}
            fields = {k: [v[i] for i in rows] for k, v in self.fields.items()}
            objects = {k: [v[i] for i in rows] for k, v in self.objects.items()}
            n = len(rows)
        return RunTable(n, fixed, fields, self._source, self.projected, objects)

    def keys(self) -> list[tuple[str, str]]:
        return list(zip(self.column("experiment_id"), self.column("run_id"), strict=True))

    def maps(self, namespace: str) -> list[dict[str, Any]]:
        """Per run, the ``namespace`` values the table holds (``{name: value}``).

        The whole objects when the table has them, else the fields it holds
        (nulls left out).
        """
        whole = self.objects.get(namespace)
        if whole is not None:
            return whole
        items = [(name, values) for (ns, name), values in self.fields.items() if ns == namespace]
        out: list[dict[str, Any]] = [{} for _ in range(self._n)]
        for name, values in items:
            for m, v in zip(out, values, strict=True):
                if v is not None:
                    m[name] = v
        return out

    def names(self, namespace: str) -> list[str]:
        """Field names of ``namespace`` in the column order of a table built from documents.

        Documents hold their keys sorted (records are written with sorted
        keys); a table of documents lists the keys of the first run that has
        any, then the others sorted.
        """
        items = [(name, values) for (ns, name), values in self.fields.items() if ns == namespace]
        if not items:
            return []
        first_row = min(
            (next((i for i, v in enumerate(values) if v is not None), self._n)
             for _, values in items),
            default=self._n,
        )
        head = sorted(name for name, values in items
                      if first_row < self._n and values[first_row] is not None)
        rest = sorted(name for name, _ in items if name not in set(head))
        return head + rest

    def row_document(self, i: int) -> dict[str, Any]:
        """A document of row ``i`` with what the table holds (marked partial)."""
        doc = {name: values[i] for name, values in self.fixed.items()}
        for ns, items in self._groups():
            doc[ns] = {name: v for name, values in items if (v := values[i]) is not None}
        for ns, maps in self.objects.items():
            m = maps[i]  # JSONB order: keys sorted as in the record documents
            doc[ns] = {k: m[k] for k in sorted(m)}
        doc[PARTIAL] = (self, i)
        return doc

    def _groups(self) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
        groups = self._by_ns
        if groups is None:
            found: dict[str, list[tuple[str, list[Any]]]] = {}
            if not self.projected:
                found = {"params": [], "metrics": []}
            for (ns, name), values in self.fields.items():
                found.setdefault(ns, []).append((name, values))
            groups = self._by_ns = list(found.items())
        return groups

    def full_documents(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any] | None]:
        """The verbatim record documents of rows ``start:stop`` (``None``: the run is gone).

        Fetched from the store in batches of :data:`RECORD_BATCH` and cached
        (shared with slices).  The status is the table's (a ``running`` run
        whose heartbeat stopped shows as ``lost``, as in a scan).
        """
        stop = self._n if stop is None else stop
        keys = list(zip(self.column("experiment_id")[start:stop],
                        self.column("run_id")[start:stop], strict=True))
        source = self._source
        with source.lock, gc_paused():
            missing = [k for k in keys if k not in source.cache]
            for j in range(0, len(missing), RECORD_BATCH):
                chunk = missing[j:j + RECORD_BATCH]
                found = source.fetch(chunk)
                for key in chunk:
                    source.cache[key] = _decoded(found.get(key))  # type: ignore[assignment]
            docs = [source.cache.get(k) for k in keys]
        statuses = self.column("status")[start:stop]
        out: list[dict[str, Any] | None] = []
        for doc, status in zip(docs, statuses, strict=True):
            if doc is not None and status is not None and doc.get("status") != status:
                doc = {**doc, "status": status}
            out.append(doc)
        return out

    def full_document(self, i: int) -> dict[str, Any] | None:
        """Row ``i``'s record document; fetches it with the rows after it (one batch)."""
        key = (self.column("experiment_id")[i], self.column("run_id")[i])
        cache = self._source.cache
        if key in cache:
            doc = cache[key]
            status = self.column("status")[i]
            if doc is not None and status is not None and doc.get("status") != status:
                doc = {**doc, "status": status}
            return doc
        return self.full_documents(i, min(i + RECORD_BATCH, self._n))[0]
