"""One run of an experiment, as seen by analysis code."""

from __future__ import annotations

import difflib
import html
import math
import os
import reprlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalab._errors import NotFoundError, StoreError
from metalab._internal._json import decode_list
from metalab.analysis._columns import PARTIAL
from metalab.analysis._deps import require
from metalab.analysis._experiment_info import ExperimentInfo
from metalab.model import ArtifactDescriptor, ErrorInfo, RunRecord, Status, deserialize

if TYPE_CHECKING:
    from metalab.analysis._context import ResultsContext
    from metalab.store import Store

__all__ = ["Run"]

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40
_short.maxdict = 6
_short.maxlist = 6


def _missing(what: str, name: str, run_id: str, available: list[str]) -> NotFoundError:
    close = difflib.get_close_matches(name, available, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    names = ", ".join(map(repr, sorted(available))) or "none"
    return NotFoundError(f"run {run_id} has no {what} {name!r}; available: {names}.{hint}")


def _points(steps: list[Any], values: list[Any]) -> list[tuple[int, float]]:
    return [
        (int(s), float(v) if v is not None else math.nan)
        for s, v in zip(steps, values, strict=False)
    ]


class Run:
    """A read-only view of one run: its record plus lazy access to its files.

    Scalar fields come from the run record; artifacts, structured data,
    series and logs are read from the store on each call (nothing is cached
    except the parsed record).  Safe to share between threads.

    Build runs through :func:`~metalab.analysis.load_results` (or
    :meth:`Run.from_store`), not directly.
    """

    __slots__ = ("_ctx", "_doc", "_record")

    def __init__(self, doc: dict[str, Any], ctx: ResultsContext) -> None:
        self._doc = doc
        self._ctx = ctx
        self._record: RunRecord | None = None

    @classmethod
    def from_store(cls, store: Store, run_id: str) -> Run:
        """The run ``run_id`` of a scoped ``store``.

        Raises:
            NotFoundError: the store has no such run.
            CorruptRecordError: its record cannot be parsed.
        """
        from metalab.analysis._context import ResultsContext

        record = store.get_run_record(run_id)
        if record is None:
            raise NotFoundError(f"the store has no run {run_id!r}; list them with load_results()")
        doc = record.to_dict()
        doc["metrics"] = dict(record.metrics)  # (floats, not their stored texts)
        run = cls(doc, ResultsContext(store))
        run._record = record
        return run

    def _full(self) -> dict[str, Any]:
        """The run's whole record document (fetched, with a batch of others, if not held)."""
        doc = self._doc
        part = doc.get(PARTIAL)
        if part is None:
            return doc
        table, row = part
        full = table.full_document(row)
        if full is None:
            raise NotFoundError(
                f"run {self.run_id} is no longer in the store (deleted after load_results); "
                "load the results again"
            )
        self._doc = full
        return full

    # ------------------------------------------------------------ record fields
    @property
    def record(self) -> RunRecord:
        """The parsed :class:`~metalab.model.RunRecord` (parsed on first access).

        Raises:
            CorruptRecordError: the stored document is not a valid record.
        """
        rec = self._record
        if rec is None:
            rec = RunRecord.from_dict(self._full(), source=f"run record {self.run_id}")
            self._record = rec
        return rec

    @property
    def run_id(self) -> str:
        return str(self._doc["run_id"])

    @property
    def experiment_id(self) -> str:
        return str(self._doc["experiment_id"])

    @property
    def status(self) -> Status:
        return Status(self._doc["status"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._doc.get("params") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self._doc.get("metrics") or {})

    @property
    def tags(self) -> tuple[str, ...]:
        doc = self._doc if "tags" in self._doc else self._full()
        return tuple(doc.get("tags") or ())

    @property
    def note(self) -> str:
        """The run's note: the one set after the fact (:meth:`set_note`), else the record's."""
        return str(self._full().get("notes") or "")

    def tag(self, *tags: str) -> bool:
        """Add ``tags`` to this run in the store (see
        :meth:`~metalab.store.Store.annotate_runs`); True if that changed it."""
        return self._annotate(add=tags)

    def untag(self, *tags: str) -> bool:
        """Take ``tags`` from this run in the store (also tags from execution time)."""
        return self._annotate(remove=tags)

    def set_note(self, note: str | None) -> bool:
        """Set this run's note in the store (None: drop the note set after the fact)."""
        return self._annotate(note=note)

    def _annotate(self, **change: Any) -> bool:
        """Write the change, then show the run's tags and note as the store has them."""
        from metalab.analysis._curate import annotate

        changed = annotate(self._ctx, [self.experiment_id], [self.run_id], **change)
        rec = self._store.get_run_record(self.run_id)
        if rec is not None:
            self._doc = {**self._full(), "tags": list(rec.tags), "notes": rec.notes}
            self._record = None
        return bool(changed)

    @property
    def seed(self) -> dict[str, Any]:
        """``{"root_seed": int, "replicate_index": int}``."""
        return dict(self._full().get("seed") or {})

    @property
    def error(self) -> ErrorInfo | None:
        return self.record.error

    @property
    def started_at(self) -> datetime | None:
        return self.record.started_at

    @property
    def finished_at(self) -> datetime | None:
        return self.record.finished_at

    @property
    def duration_ms(self) -> float | None:
        value = self._doc.get("duration_ms")
        return float(value) if value is not None else None

    @property
    def derived(self) -> dict[str, Any]:
        """Derived metrics stored for this run (``{}`` if none)."""
        return dict(self._ctx.derived_of(self.experiment_id, self.run_id) or {})

    # --------------------------------------------------------------- storage
    @property
    def context_fingerprint(self) -> str:
        return self.record.context_fingerprint

    @property
    def params_fingerprint(self) -> str:
        return self.record.params_fingerprint

    @property
    def seed_fingerprint(self) -> str:
        return self.record.seed_fingerprint

    @property
    def experiment(self) -> ExperimentInfo:
        """Name, version, description, metadata and tags of the run's experiment, read
        from its latest manifest on each access (see :class:`ExperimentInfo`)."""
        return ExperimentInfo.read(self._store, self.experiment_id)

    @property
    def _store(self) -> Store:
        return self._ctx.store_for(self.experiment_id)

    def artifacts(self) -> list[ArtifactDescriptor]:
        """Descriptors of the run's artifacts (from the record, else the store)."""
        listed = list(self.record.artifacts)
        if listed:
            return listed
        return list(self._store.list_artifacts(self.run_id))

    def _descriptor(self, name: str) -> ArtifactDescriptor:
        for desc in self.artifacts():
            if desc.name == name:
                return desc
        for desc in self._store.list_artifacts(self.run_id):
            if desc.name == name:
                return desc
        raise _missing("artifact", name, self.run_id, [a.name for a in self.artifacts()])

    def artifact(self, name: str) -> Any:
        """The artifact ``name`` loaded back into a Python object.

        JSON artifacts come back as JSON values, numpy ones as arrays (or a
        dict of arrays), text as ``str``; unknown kinds (raw files) as
        ``bytes``.  Loading a pickle artifact runs code from the file: only
        load artifacts you trust.

        Raises:
            NotFoundError: no such artifact (the message lists the available ones).
            MissingDependencyError: a numpy artifact without numpy installed.
        """
        desc = self._descriptor(name)
        data = self._store.get_artifact_bytes(self.run_id, name)
        if desc.kind == "numpy":
            require("numpy", "numpy", f"Run.artifact({name!r})")
        return deserialize(data, desc.kind, desc.format)

    def artifact_path(self, name: str) -> str:
        """A local file path of artifact ``name`` (stores with a working directory).

        Raises:
            NotFoundError: no such artifact, or its file is missing.
            StoreError: the store keeps no local files (use :meth:`artifact`).
        """
        desc = self._descriptor(name)
        store = self._store
        if not store.supports_working_directory:
            raise StoreError(
                f"{type(store).__name__} keeps no local files; read the artifact with "
                f"run.artifact({name!r}) instead"
            )
        root = os.path.realpath(store.get_working_directory())
        uri = desc.uri or ""
        path = os.path.realpath(os.path.join(root, uri)) if uri else ""
        if not uri or os.path.isabs(uri) or not path.startswith(root + os.sep):
            raise StoreError(
                f"artifact {name!r} of run {self.run_id} has an invalid location {uri!r}; "
                "it must be relative to the experiment folder"
            )
        if not os.path.isfile(path):
            raise NotFoundError(
                f"the file of artifact {name!r} of run {self.run_id} is missing: {path}"
            )
        return path

    def list_data(self) -> list[str]:
        """Names of the structured data items (and series) stored for the run."""
        return sorted(self._store.list_data(self.run_id))

    def data(self, name: str) -> Any:
        """Structured data ``name``.

        When the payload records a ``dtype`` and ``shape`` and numpy is
        installed, the value comes back as a numpy array of that dtype and
        shape; otherwise as the stored JSON value (for a metric series,
        ``{"step": [...], "value": [...]}`` with non-finite values as floats).

        Raises:
            NotFoundError: no such item (the message lists the available ones).
        """
        payload = self._store.get_data(self.run_id, name)
        if payload is None:
            raise _missing("data item", name, self.run_id, self.list_data())
        value = payload.get("data")
        dtype = payload.get("dtype")
        shape = payload.get("shape")
        if payload.get("kind") == "series" and isinstance(value, dict) and isinstance(
                value.get("value"), list):
            value = {**value, "value": decode_list(value["value"])}
        if dtype is not None and shape is not None:
            try:
                import numpy as np
            except ImportError:
                return value
            return np.asarray(value, dtype=dtype).reshape(tuple(shape))
        return value

    def metric_series(self, name: str) -> list[tuple[int, float]]:
        """The stepped metric series ``name`` as ``[(step, value), ...]``, ordered by step.

        For a run that was ``running`` when it was loaded, the steps it has
        written so far (its live series file, when the store keeps one; a
        step shows up within about a second of its capture) are returned
        until it ends; then (and for every ended run) the series stored
        with its final record.  Missing values (stored as ``null``) come
        back as ``nan``.

        Raises:
            NotFoundError: no such series (the message lists the available ones).
            OSError: the live series file exists but cannot be read.
        """
        live: dict[str, tuple[list[int], list[Any]]] = {}
        if self._doc.get("status") == Status.RUNNING.value:
            live = self._store.read_live_series(self.run_id, self._full().get("attempt") or 1)
            if name in live:
                return _points(*live[name])
        payload = self._store.get_data(self.run_id, name)
        if payload is None or payload.get("kind") != "series":
            available = sorted({*(self._full().get("series") or ()), *live})
            raise _missing("metric series", name, self.run_id, available)
        data = payload.get("data") or {}
        return _points(data.get("step") or [], data.get("value") or [])

    def live_series(self) -> dict[str, list[tuple[int, float]]]:
        """Every series a running run has written so far, ``{name: [(step, value), ...]}``.

        ``{}`` for a run that has ended (its live file is removed once its series are
        stored; read them with
        :meth:`metric_series`), that has captured no stepped metric yet, or
        whose store keeps no live series.

        Raises:
            OSError: the live series file exists but cannot be read.
        """
        live = self._store.read_live_series(self.run_id, self._full().get("attempt") or 1)
        return {name: _points(steps, values) for name, (steps, values) in live.items()}

    def logs(self, name: str = "run") -> str:
        """The text of log ``name`` (``""`` if the run wrote none)."""
        return self._store.get_log(self.run_id, name) or ""

    def list_logs(self) -> list[str]:
        """Names of the run's logs."""
        return sorted(self._store.list_logs(self.run_id))

    # ---------------------------------------------------------------- display
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Run):
            return NotImplemented
        return (self.experiment_id, self.run_id) == (other.experiment_id, other.run_id)

    def __hash__(self) -> int:
        return hash((self.experiment_id, self.run_id))

    def __repr__(self) -> str:
        parts = [
            f"run_id={self.run_id!r}",
            f"experiment_id={self.experiment_id!r}",
            f"status={self._doc.get('status')!r}",
            f"params={_short.repr(self._doc.get('params') or {})}",
            f"metrics={_short.repr(self._doc.get('metrics') or {})}",
        ]
        return f"Run({', '.join(parts)})"

    def _repr_html_(self) -> str:
        rows: list[tuple[str, Any]] = [
            ("run_id", self.run_id),
            ("experiment_id", self.experiment_id),
            ("status", self._doc.get("status")),
            ("started_at", self._doc.get("started_at")),
            ("duration_ms", self._doc.get("duration_ms")),
            ("tags", ", ".join(map(str, self.tags))),
        ]
        rows += [(f"params.{k}", v) for k, v in (self._doc.get("params") or {}).items()]
        rows += [(f"metrics.{k}", v) for k, v in (self._doc.get("metrics") or {}).items()]
        err = self._doc.get("error")
        if isinstance(err, dict) and err:
            rows.append(("error", f"{err.get('type', '')}: {err.get('message', '')}"))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(_short.repr(v) if not isinstance(v, str) else v)}</td></tr>"
            for k, v in rows
        )
        from metalab.analysis._plots_html import run_media_html

        return f"<table class='metalab-run'><tbody>{body}</tbody></table>{run_media_html(self)}"
