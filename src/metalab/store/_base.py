"""The Store interface every storage backend implements.

A store holds the results of runs of one experiment (a *scoped* store) or of
a collection of experiments (an *unscoped* store).  The primitives below are
the whole contract; everything else (Results, transfer, the runner) is built on
them.

Capabilities:
    Optional features are declared with ``supports_*`` class flags, and the
    code that needs a feature reads the flag (never ``isinstance`` or
    ``hasattr``).  A method behind a flag the store does not set raises
    ``NotImplementedError`` (the claim methods instead behave as if every
    claim succeeded):

    * ``supports_working_directory``: :meth:`Store.get_working_directory`
      names a local folder (workers run in it, transfers copy extra files
      from it).
    * ``supports_log_path``: :meth:`Store.log_path` gives a local file that
      may be appended to directly (log capture).
    * ``supports_index``: :meth:`Store.rebuild_index` rebuilds a query index
      from the files (``metalab store rebuild-index``).
    * ``supports_run_table``: :meth:`Store.run_table` and
      :meth:`Store.read_run_documents` answer from an index
      (``load_results`` uses them).
    * ``supports_aggregate``: :meth:`Store.aggregate_runs` computes grouped
      statistics of runs in the index (charts over seeds without loading runs),
      :meth:`Store.histogram_runs` histograms, :meth:`Store.sample_runs` samples.
    * ``supports_annotations``: tags and notes after the fact
      (:meth:`Store.annotate_runs`, :meth:`Store.annotate_experiment`) and
      :meth:`Store.delete_experiment`.
    * ``supports_live_series``: :meth:`Store.live_series_path` names a local
      file where a running run's stepped metrics are appended as they come
      (:meth:`Store.open_live_series`, :meth:`Store.read_live_series`; see
      :mod:`metalab.store._series`).
    * ``supports_claims``: :meth:`Store.try_claim` really keeps two launches
      apart (without it, a claim always succeeds, and :func:`metalab.run`
      warns once per store type that two launches at once may execute a
      run twice).

Read-only stores:
    A store whose :attr:`Store.read_only` is True refuses every method that
    writes (:data:`WRITE_METHODS`) with :class:`ReadOnlyStoreError` before
    anything is written.  The refusal is one guard, installed on those
    methods by :meth:`Store.__init_subclass__` for every subclass; a backend
    only says whether it is read-only.  A read-only FileStore
    (``FileStoreConfig(read_only=True)``, locator ``?read_only=true``) also
    writes nothing when it reads: queries scan the files instead of using
    the catalog, and a missing ``_meta.json`` is not rebuilt.

Concurrency contract (all backends):
    * Every ``put_*`` is atomic: a concurrent reader sees the old value or
      the new one, never a partial one.  Concurrent writes of the same item:
      last writer wins (concurrent ``put_artifact`` calls for one run all end
      up in its artifact list).  ``append_log`` adds to the end of the log
      (FileStore: ``O_APPEND``), visible to readers at once.  ``delete_run``
      removes the run's record first, then its other items: from then on
      the run is gone for every reader (a FileStore moves the files to a
      trash folder first, see :mod:`metalab.store._file_curate`).
      Annotations (tags, notes) are read-modify-written under a lock, so
      concurrent taggers lose nothing.
    * A store object may be shared by threads; methods are safe to call from
      several threads and several processes (and hosts, on a shared
      filesystem) at once.  Stores pickle as their config and reconnect on
      load, which is how they reach other processes.
    * Reads of single items and bulk reads of records (``get_*``,
      ``iter_run_documents``, ``list_*``) take no locks.
    * Locks are taken only where a read-modify-write spans files: the
      artifact manifest of one run (``put_artifact``, a lock file per run),
      claims (``try_claim``, exclusive create), and a FileStore's query
      catalog (``query_runs`` and ``rebuild_index`` hold the folder's
      ``.catalog`` lock file while they refresh and read it; a lock held too
      long, or a folder that cannot be written, makes the query scan the
      files instead, with the same answers).  All of these are lock files,
      so they exclude other threads, processes and hosts alike.
    * PostgresStore: the same for its files; its index is written by a
      background thread per process and is never required for correctness
      (see :mod:`metalab.store._postgres._store`).

Errors:
    * Bad names raise :class:`~metalab.InvalidNameError` before anything is
      written.
    * ``get_*`` methods return ``None`` for a missing item; ``*_bytes`` /
      ``open_*`` raise :class:`~metalab.NotFoundError`.
    * Files that exist but cannot be parsed raise (or, in bulk reads, report
      through ``on_error``) :class:`~metalab.CorruptRecordError` naming the file.
    * Writes to a read-only store raise :class:`ReadOnlyStoreError`.
    * Failures of the medium (disk full, permissions) raise ``OSError`` or
      :class:`~metalab.StoreError`.
"""

from __future__ import annotations

import abc
import functools
import io
import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, cast

from metalab._errors import CorruptRecordError, ReadOnlyStoreError
from metalab.model import ArtifactDescriptor, RunRecord
from metalab.query._records import ErrorCallback, warn_corrupt
from metalab.store._series import LiveSeries, LiveSeriesWriter, read_live_series_file

if TYPE_CHECKING:
    from metalab.store._annotations import Annotations
    from metalab.store._config import StoreConfig

__all__ = [
    "WRITE_METHODS",
    "ErrorCallback",
    "Progress",
    "ReadOnlyStoreError",
    "Store",
    "warn_corrupt",
]

log = logging.getLogger("metalab.store")

#: ``progress(done, total_or_None)``, called while a long operation goes on
Progress = Callable[[int, int | None], None]


#: the methods of :class:`Store` that write; a read-only store refuses them all
WRITE_METHODS = frozenset({
    "put_run_record", "delete_run", "put_artifact", "append_log", "log_path", "open_live_series",
    "annotate_runs", "annotate_experiment", "delete_experiment",
    "put_data", "put_derived", "put_experiment_manifest",
    "try_claim", "touch_heartbeat", "release_claim", "rebuild_index",
})

_GUARD_MARK = "_metalab_write_guard"


def _guard_write(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` refusing to run on a read-only store (the one read-only check)."""
    if getattr(fn, _GUARD_MARK, False):
        return fn
    name = fn.__name__

    @functools.wraps(fn)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self!r} is read-only, so {name}() was refused and nothing was written; "
                "open the store without read_only to write to it",
                name,
            )
        return fn(self, *args, **kwargs)

    setattr(guarded, _GUARD_MARK, True)
    return guarded


def _guard_writes(cls: type) -> None:
    """Guard every write method ``cls`` has, its own or inherited (from a mixin too)."""
    for name in WRITE_METHODS | getattr(cls, "backend_write_methods", frozenset()):
        fn = getattr(cls, name, None)
        if callable(fn) and not getattr(fn, "__isabstractmethod__", False):
            guarded = _guard_write(fn)
            if guarded is not fn:  # (an inherited method already guarded stays where it is)
                setattr(cls, name, guarded)


class Store(abc.ABC):
    """Abstract base of all stores.  See the module docstring for the contract.

    Subclasses implement the abstract methods, set the ``supports_*`` flags of
    the optional features they have, and say whether they are
    :attr:`read_only`; the write methods (:data:`WRITE_METHODS`) of every
    subclass are wrapped so that a read-only store refuses them.
    """

    #: the store can name a local folder holding this experiment's files
    supports_working_directory: ClassVar[bool] = False
    #: ``log_path()`` gives a local file that may be appended to directly
    supports_log_path: ClassVar[bool] = False
    #: ``live_series_path()`` names a local file for the steps of running runs
    supports_live_series: ClassVar[bool] = False
    #: the store keeps a query index that :meth:`rebuild_index` rebuilds from the files
    supports_index: ClassVar[bool] = False
    #: what the number :meth:`rebuild_index` returns counts (for messages)
    index_unit: ClassVar[str] = "items"
    #: :meth:`run_table` answers runs as columns and :meth:`read_run_documents`
    #: fetches many records at once (an index that needs no record parsing)
    supports_run_table: ClassVar[bool] = False
    #: :meth:`aggregate_runs` groups runs in the store's index (its ``_query_index``)
    supports_aggregate: ClassVar[bool] = False
    #: the backend's own methods that write (beyond :data:`WRITE_METHODS`):
    #: a read-only store refuses them with the same guard
    backend_write_methods: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _guard_writes(cls)

    @property
    def read_only(self) -> bool:
        """True if this store refuses writes (:class:`ReadOnlyStoreError`).

        False unless the backend says otherwise (a FileStore opened with
        ``read_only=True``).
        """
        return False

    # ------------------------------------------------------------------ identity
    @property
    @abc.abstractmethod
    def config(self) -> StoreConfig:
        """The config this store was connected from (``config.connect()`` rebuilds it).

        Raises:
            Nothing: a property of the connected store.
        """

    @property
    def experiment_id(self) -> str | None:
        """The experiment this store is scoped to, or ``None`` for a collection."""
        return self.config.experiment_id

    @property
    def is_scoped(self) -> bool:
        return self.experiment_id is not None

    # ------------------------------------------------------------- run records
    @abc.abstractmethod
    def put_run_record(self, record: RunRecord, *, durable: bool = True) -> None:
        """Write (create or replace) the record of ``record.run_id`` atomically.

        Readers see the previous record or the new one, never a partial one,
        whatever ``durable`` says.  With ``durable=True`` (the default) the
        record's contents are on stable storage before it becomes visible,
        so a power loss or OS crash never turns it into a damaged record.
        ``durable=False`` may skip that (no fsync): for records the executor
        re-creates anyway (``running`` records and their heartbeats), whose
        loss in a power cut only means the run restarts.  Each store says
        what else its durable write guarantees.

        Raises:
            InvalidNameError: the run id is not a usable name.
            ScopeError: the record belongs to another experiment than the
                one the store is scoped to.
            ReadOnlyStoreError: the store is read-only.
            OSError, StoreError: the medium refused the write (disk full,
                permissions); the previous record is kept.
        """

    @abc.abstractmethod
    def get_run_record(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` or ``None``.

        Raises:
            InvalidNameError: the run id is not a usable name.
            CorruptRecordError: the record exists but cannot be parsed.
        """

    @abc.abstractmethod
    def iter_run_documents(
        self, experiment_id: str | None = None, *, on_error: ErrorCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the raw JSON documents of all run records (the fast bulk path).

        A scoped store yields only its own experiment's runs.  ``experiment_id``
        narrows an unscoped store to one experiment.  Unreadable files are
        reported to ``on_error`` (default: :func:`warn_corrupt`) and skipped.

        Raises:
            OSError: the medium cannot be listed (a store that does not exist
                yet yields nothing).  Whatever ``on_error`` raises stops the
                iteration.
        """

    def list_run_records(
        self, experiment_id: str | None = None, *, on_error: ErrorCallback | None = None
    ) -> list[RunRecord]:
        """All run records (see :meth:`iter_run_documents` for scoping and errors)."""
        report = on_error or warn_corrupt
        out: list[RunRecord] = []
        for doc in self.iter_run_documents(experiment_id, on_error=report):
            try:
                out.append(RunRecord.from_dict(doc, source=str(doc.get("run_id", "?"))))
            except CorruptRecordError as exc:
                report(exc)
        return out

    def run_exists(self, run_id: str) -> bool:
        return self.get_run_record(run_id) is not None

    def query_runs(
        self,
        experiment_id: str | None = None,
        where: Any = None,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The runs matching a query (see docs/queries.md for the language).

        ``where``: a query string or an AST from :mod:`metalab.query`.
        ``columns``: field names to return; each result is then a projected
        document (``run_id``, ``experiment_id``, ``status`` as readers see it,
        ``started_at``, and the columns, params/metrics/derived nested);
        ``None`` returns whole run documents.  ``order_by``: field names,
        ``-name`` for descending; ties by experiment id then run id (also the
        order without ``order_by``).  ``limit``: at most that many runs.

        This default scans :meth:`iter_run_documents` and evaluates in memory;
        stores with an index (FileStore's catalog, PostgreSQL) override it and
        answer the same from the index.  Unreadable
        files are skipped (reported to the default ``on_error``).

        Raises:
            QuerySyntaxError, QueryError: a malformed query.
            UnknownFieldError: a params/metrics/derived name no run has.
        """
        from metalab.query import as_query, run_query

        query = as_query(where, columns, order_by, limit)
        scope = experiment_id if experiment_id is not None else self.experiment_id
        docs = self.iter_run_documents(scope)

        def derived_of(doc: dict[str, Any]) -> dict[str, Any] | None:
            rid = doc.get("run_id")
            if not isinstance(rid, str):
                return None
            try:
                return self.get_derived(rid)
            except (CorruptRecordError, ValueError):
                return None

        return run_query(docs, query, derived_of)

    def run_table(self, experiment_id: str | None = None, query: Any = None
                  ) -> dict[str, Any] | None:
        """The runs of ``query`` as columns from an index (only if ``supports_run_table``).

        None means the index cannot answer now (unreachable, behind the
        files): the caller reads the files instead.
        """
        raise NotImplementedError(f"{type(self).__name__} has no run table")

    def aggregate_runs(self, experiment_id: str | None = None, where: Any = None, *,
                       by: Sequence[str] = (), values: Sequence[str] = ()
                       ) -> list[dict[str, Any]] | None:
        """The runs of a query grouped by the values of ``by``, computed in the index
        (only if ``supports_aggregate``); None: the index cannot answer now
        (unreachable, behind the files, a collection of several folders, a field
        it cannot group by): load the runs instead.

        ``where`` as in :meth:`query_runs`; ``by`` and ``values``: field names
        (``"params.lr"``, ``"metrics.loss"``, ``"derived.z"``; ``by`` also
        ``status``, ``experiment_id``, ``duration_ms``; ``values`` also
        ``duration_ms``).  One dict per group, in no particular order:
        ``{"keys": [value of each ``by`` field, as the runs' JSON holds it
        (None: missing; an infinite number as its text "Infinity")], "n": runs,
        "values": [per ``values`` field {"missing", "other" (a value that is not
        a number: text, boolean, list ...), "nonfinite" (inf, -inf, NaN),
        "finite": counts of runs; "mean", "m2": mean and sum of squared
        deviations of the finite numbers (None without any)}]}``.  The texts
        "Infinity", "-Infinity", "NaN" count as those numbers; booleans are not
        numbers.  Runs as readers see them (a stopped heartbeat: lost), in the
        store's scope.

        Raises:
            NotImplementedError: the store does not ``supports_aggregate``.
            QuerySyntaxError, QueryError: a malformed query or field name.
            UnknownFieldError: ``where`` names a field no run has.
        """
        if not self.supports_aggregate:
            raise NotImplementedError(f"{type(self).__name__} cannot aggregate in an index")
        from metalab.query import as_query, parse_field

        query = as_query(where, None, None, None)
        index = cast(Any, self)._query_index  # (see supports_aggregate)
        groups: list[dict[str, Any]] | None = index.aggregate(
            experiment_id, query, [parse_field(f) for f in by], [parse_field(f) for f in values])
        return groups

    def histogram_runs(self, experiment_id: str | None = None, where: Any = None, *,
                       value: str, group: str | None = None,
                       edges: Callable[[list[dict[str, Any]]], Sequence[float] | None]
                       ) -> list[dict[str, Any]] | None:
        """A histogram of ``value`` over the runs of a query, computed in the index
        (only if ``supports_aggregate``); None: the index cannot answer now (as
        for :meth:`aggregate_runs`): load the runs instead.

        Two steps over the same runs (one lock or transaction): first one dict
        per value of ``group`` (one in all without it; none without runs), in
        no particular order: ``{"key": the group value as the runs' JSON holds
        it (None: missing or no group), "n": runs, "missing", "nan", "posinf",
        "neginf", "finite", "other" (not a number: text, boolean, list ...):
        counts of runs by their ``value``, "min", "max": the least and greatest
        finite number (None without any)}``; then ``edges(groups)`` gives the
        bin edges (ascending, finite, spanning every "min".."max") or None (no
        counts: the groups are returned as they are), and each group gets
        "counts": its finite numbers per bin, binned as ``numpy.histogram``
        bins them (``edges[i] <= v < edges[i + 1]``, the last bin closed),
        comparing float64 values.  Field names and runs as in :meth:`aggregate_runs`.

        Raises:
            NotImplementedError: the store does not ``supports_aggregate``.
            QuerySyntaxError, QueryError: a malformed query or field name.
            UnknownFieldError: ``where`` names a field no run has.
            ValidationError: ``edges`` gave unusable edges.
        """
        from metalab.query import parse_field

        index, query = self._aggregating(where)
        got: list[dict[str, Any]] | None = index.histogram(
            experiment_id, query, parse_field(value),
            parse_field(group) if group is not None else None, edges)
        return got

    def sample_runs(self, experiment_id: str | None = None, where: Any = None, *,
                    x: str, y: str, group: str | None = None, limit: int
                    ) -> dict[str, Any] | None:
        """The runs of a query counted by what their ``x`` and ``y`` values are, and a
        fixed sample of those with finite numbers in both, computed in the index
        (only if ``supports_aggregate``); None: the index cannot answer now (as
        for :meth:`aggregate_runs`): load the runs instead.

        ``{"classes": [{"key": the ``group`` value as the runs' JSON holds it
        (None: missing or no group), "x", "y": each one of "missing", "other"
        (not a number), "nan", "posinf", "neginf", "finite", "n": runs}, ...],
        "sample": None, or when more than ``limit`` runs have finite x and y,
        ``limit`` of them as ``[run_id, x, y, group value]`` (floats)}``, from one
        lock or transaction.  The sample is the first runs in the order of a
        hash of each run: the same query over the same runs gives the same
        sample each time, spread over all of them.

        Raises:
            NotImplementedError: the store does not ``supports_aggregate``.
            QuerySyntaxError, QueryError: a malformed query or field name.
            UnknownFieldError: ``where`` names a field no run has.
        """
        from metalab.query import parse_field

        index, query = self._aggregating(where)
        got: dict[str, Any] | None = index.sample(
            experiment_id, query, parse_field(x), parse_field(y),
            parse_field(group) if group is not None else None, limit)
        return got

    def _aggregating(self, where: Any) -> tuple[Any, Any]:
        """(the index that aggregates, the query of ``where``) for :meth:`histogram_runs`
        and :meth:`sample_runs`.

        Raises:
            NotImplementedError: the store does not ``supports_aggregate``.
            QuerySyntaxError, QueryError: a malformed query.
        """
        if not self.supports_aggregate:
            raise NotImplementedError(f"{type(self).__name__} cannot aggregate in an index")
        from metalab.query import as_query

        # (the stores that aggregate hold their index as ``_query_index``)
        return cast(Any, self)._query_index, as_query(where, None, None, None)

    def read_run_documents(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Record documents of many ``(experiment_id, run_id)`` runs at once
        (only if ``supports_run_table``); runs found nowhere are absent."""
        raise NotImplementedError(f"{type(self).__name__} has no run table")

    def status_counts(self, experiment_id: str | None = None) -> dict[str, int]:
        """``{status: runs}`` of the runs in scope, by the status a reader sees (a
        ``running`` run whose heartbeat stopped counts as ``lost``); statuses with
        no run are absent.  From the store's query index when it can answer (one
        ``GROUP BY``), else by reading every run document (unreadable ones are
        reported and not counted, as in :meth:`iter_run_documents`)."""
        from collections import Counter

        from metalab.query._liveness import lost_cutoff, status_at_cutoff

        # (the stores with an index hold it as ``_query_index``: see store/_index)
        ask = getattr(getattr(self, "_query_index", None), "status_counts", None)
        counted = ask(experiment_id) if callable(ask) else None
        if counted is not None:
            return dict(counted)
        cutoff = lost_cutoff()  # one instant for every run counted
        found = Counter(status_at_cutoff(d, cutoff) for d in self.iter_run_documents(experiment_id))
        return {status: n for status, n in found.items() if status is not None}

    def status_overview(self, experiment_id: str | None = None, *,
                        planned: Collection[str] | None = None) -> dict[str, Any]:
        """:meth:`status_counts` and the latest activity of the runs in scope, in one
        pass: ``{"counts": {status: runs}, "last_started_at": ISO text or None,
        "last_finished_at": ISO text or None, "planned_recorded": int or None}``.

        ``planned``: run ids (e.g. a manifest's ``run_ids``; a set or frozenset is
        used as it is, anything else is made one); ``planned_recorded`` is then
        how many runs in scope have one of them as their id (so
        ``len(set(planned)) - planned_recorded`` planned runs have no record),
        None without ``planned``.  From the store's query index when it can
        answer (one ``GROUP BY``), else by reading every run document
        (unreadable ones reported and not counted, as in :meth:`status_counts`).
        """
        from collections import Counter

        from metalab.query._eval import micros_to_iso
        from metalab.query._liveness import lost_cutoff, parse_time, status_at_cutoff

        ask = getattr(getattr(self, "_query_index", None), "status_overview", None)
        answer = ask(experiment_id, planned) if callable(ask) else None
        if answer is not None:
            return dict(answer)
        cutoff = lost_cutoff()
        wanted = planned if planned is None or isinstance(planned, (set, frozenset)) \
            else frozenset(planned)
        counts: Counter[str] = Counter()
        latest: dict[str, int] = {}
        hits = 0
        for doc in self.iter_run_documents(experiment_id):
            status = status_at_cutoff(doc, cutoff)
            if status is None:
                continue
            counts[status] += 1
            run_id = doc.get("run_id")
            hits += wanted is not None and isinstance(run_id, str) and run_id in wanted
            for key in ("started_at", "finished_at"):
                us = parse_time(doc.get(key))
                if us is not None and us > latest.get(key, us - 1):
                    latest[key] = us
        return {"counts": dict(counts),
                "last_started_at": micros_to_iso(latest.get("started_at")),
                "last_finished_at": micros_to_iso(latest.get("finished_at")),
                "planned_recorded": None if wanted is None else hits}

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Remove everything stored for ``run_id`` (record, derived, data, artifacts, logs,
        annotations), the record first (see the concurrency contract).

        Deleting a run that does not exist removes what is left of it (a
        deletion killed part-way), else does nothing.

        Raises:
            InvalidNameError: the run id is not a usable name.
            ReadOnlyStoreError: the store is read-only.
            OSError: the medium refused the deletion.
        """

    # ------------------------------------------------------------ curation
    #: tags and notes after the fact, and :meth:`delete_experiment`
    supports_annotations: ClassVar[bool] = False

    def annotate_runs(self, run_ids: Iterable[str], *, add_tags: Iterable[str] = (),
                      remove_tags: Iterable[str] = (), note: Any = ...) -> list[str]:
        """Add and remove tags of runs, and set (or with None clear) their note.

        The change is kept apart from the run records (which stay as their
        execution wrote them) and shows in every read and query of the runs at
        once: ``tags contains "x"`` finds a run tagged ``x``.  Each run's
        change is atomic; concurrent changes are all kept.  ``note=...``
        (the default) leaves the note as it is.

        Returns:
            the run ids whose annotations changed.

        Raises:
            NotFoundError: a run is not in the store (nothing was changed).
            ValidationError: a tag is not a non-empty one-line string of at most
                200 characters, or the note is not a string (or None).
            ReadOnlyStoreError: the store is read-only.
            NotImplementedError: the store does not ``supports_annotations``.
            StoreError, OSError: the change could not be written.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no annotations")

    def annotate_experiment(self, experiment_id: str | None = None, *,
                            add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (),
                            note: Any = ...) -> bool:
        """Tags and note of a whole experiment (its own if the store is scoped);
        its tags reach every run of it, those run later included.

        Returns True if the annotations changed.  Raises as
        :meth:`annotate_runs` (NotFoundError: no such experiment; ScopeError:
        a collection store needs ``experiment_id``, a scoped one accepts only its own).
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no annotations")

    def get_annotations(self, run_id: str) -> Annotations:
        """The annotations set on ``run_id`` (empty ones if none).

        Raises:
            CorruptRecordError: its annotation file cannot be parsed.
            NotImplementedError: the store does not ``supports_annotations``.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no annotations")

    def executed_record(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` as its execution wrote it, without the
        annotations every other read applies (None if there is no such run).

        Raises:
            CorruptRecordError: the record exists but cannot be parsed.
            NotImplementedError: the store does not ``supports_annotations``.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no annotations")

    def get_experiment_annotations(self, experiment_id: str | None = None) -> Annotations:
        """The annotations set on the experiment (empty ones if none); raises
        as :meth:`get_annotations` and :meth:`annotate_experiment`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no annotations")

    def delete_experiment(self, experiment_id: str | None = None) -> bool:
        """Remove an experiment and everything stored for it (its own if scoped).

        Atomic for readers: the experiment is there whole or gone.  Returns True.

        Raises:
            NotFoundError: no such experiment in the store.
            ScopeError: as :meth:`annotate_experiment`.
            ReadOnlyStoreError: the store is read-only.
            NotImplementedError: the store does not ``supports_annotations``.
            OSError: the medium refused the deletion.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete experiments")

    # ---------------------------------------------------------------- artifacts
    @abc.abstractmethod
    def put_artifact(
        self,
        run_id: str,
        name: str,
        source: bytes | os.PathLike[str],
        *,
        kind: str,
        format: str,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactDescriptor:
        """Store an artifact's bytes (or copy the file at ``source``) atomically.

        Returns the descriptor to put in the run record.  Storing a name again
        replaces the artifact.

        Raises:
            InvalidNameError: the run id, name or format is not a usable name,
                the name starts with ``_`` (reserved), or its file would hold
                another artifact of the run.
            ValidationError: ``source`` is neither bytes nor a path.
            CorruptRecordError: the run's artifact list cannot be parsed.
            ReadOnlyStoreError: the store is read-only.
            StoreError: the run's artifact list stayed locked by another
                writer for too long.
            OSError: ``source`` cannot be read, or the medium refused the write.
        """

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Descriptors of the artifacts stored for ``run_id`` (``[]`` if none).

        Raises:
            InvalidNameError: the run id is not a usable name.
            CorruptRecordError: the run's artifact list cannot be parsed.
        """

    @abc.abstractmethod
    def open_artifact(self, run_id: str, name: str) -> BinaryIO:
        """Open an artifact for reading.

        Raises:
            NotFoundError: no such artifact.
            InvalidNameError: the run id or name is not a usable name.
            CorruptRecordError: the run's artifact list cannot be parsed.
        """

    def get_artifact_bytes(self, run_id: str, name: str) -> bytes:
        with self.open_artifact(run_id, name) as fh:
            return fh.read()

    # --------------------------------------------------------------------- logs
    @abc.abstractmethod
    def append_log(self, run_id: str, name: str, text: str) -> None:
        """Append ``text`` to log ``name`` of ``run_id`` (created if missing).

        Raises:
            InvalidNameError: the run id or log name is not a usable name.
            ReadOnlyStoreError: the store is read-only.
            OSError: the medium refused the write.
        """

    @abc.abstractmethod
    def get_log(self, run_id: str, name: str = "run") -> str | None:
        """The content of a log, or ``None`` if it does not exist.

        Raises:
            InvalidNameError: the run id or log name is not a usable name.
        """

    @abc.abstractmethod
    def list_logs(self, run_id: str) -> list[str]:
        """Names of the logs of ``run_id`` (``[]`` if none).

        Raises:
            InvalidNameError: the run id is not a usable name.
        """

    def open_log(self, run_id: str, name: str = "run") -> BinaryIO | None:
        """Log ``name`` opened for binary reading (``None`` if it does not exist).

        For reading a part of a large log (its tail) without reading it all;
        this default holds :meth:`get_log` in memory, a store with log files
        opens the file.  The caller closes it.

        Raises:
            InvalidNameError: the run id or log name is not a usable name.
            NotFoundError: the log is not a regular file inside the store.
        """
        text = self.get_log(run_id, name)
        return None if text is None else io.BytesIO(text.encode("utf-8"))

    def log_path(self, run_id: str, name: str) -> str:
        """A local file path for log ``name`` (only if ``supports_log_path``)."""
        raise NotImplementedError(f"{type(self).__name__} has no local log files")

    # ------------------------------------------------------------- live series
    def live_series_path(self, run_id: str) -> str:
        """The local live series file of ``run_id`` (only if ``supports_live_series``).

        Names the file only: nothing is created or read.

        Raises:
            InvalidNameError: the run id is not a usable name.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no live series files")

    def open_live_series(self, run_id: str, attempt: int = 1) -> LiveSeriesWriter:
        """Start the live series file of ``attempt`` of ``run_id`` (any earlier one is
        replaced) and return its writer (only if ``supports_live_series``).

        Raises:
            InvalidNameError: the run id is not a usable name.
            ReadOnlyStoreError: the store is read-only.
            OSError: the file cannot be created.
        """
        if not self.supports_live_series:
            raise NotImplementedError(f"{type(self).__name__} keeps no live series files")
        return LiveSeriesWriter(self.live_series_path(run_id), attempt)

    def read_live_series(self, run_id: str, attempt: int | None = None) -> LiveSeries:
        """The steps a running run has written so far: ``{name: (steps, values)}``.

        ``{}`` when the store keeps no live series, the run has none (it
        captured no stepped metric yet, or it ended: its series are then
        read with :meth:`get_data`), or (with ``attempt``) the file belongs
        to another attempt.  See :func:`~metalab.store._series.read_live_series_file`.

        Raises:
            InvalidNameError: the run id is not a usable name.
            OSError: the file exists but cannot be read.
        """
        if not self.supports_live_series:
            return {}
        return read_live_series_file(self.live_series_path(run_id), attempt)

    # ---------------------------------------------------------- structured data
    @abc.abstractmethod
    def put_data(self, run_id: str, name: str, payload: dict[str, Any]) -> None:
        """Store a JSON document ``payload`` as structured data ``name`` of ``run_id``.

        ``payload`` holds ``data`` plus optional ``kind`` ("data" or "series"),
        ``dtype``, ``shape`` and ``metadata``.  The values of a series may be
        infinite or NaN floats: they are stored as the texts ``"Infinity"``,
        ``"-Infinity"``, ``"NaN"`` (see :mod:`metalab._internal._json`), as
        :meth:`get_data` returns them.

        Raises:
            InvalidNameError: the run id or data name is not a usable name.
            ValidationError: ``payload`` is not a dict with ``data``, its
                ``kind`` is unknown, or it holds NaN / an infinity outside
                the values of a series.
            ReadOnlyStoreError: the store is read-only.
            OSError: the medium refused the write.
        """

    @abc.abstractmethod
    def get_data(self, run_id: str, name: str) -> dict[str, Any] | None:
        """The payload stored by :meth:`put_data`, or ``None``.

        Raises:
            InvalidNameError: the run id or data name is not a usable name.
            CorruptRecordError: the stored payload cannot be parsed.
        """

    @abc.abstractmethod
    def list_data(self, run_id: str) -> list[str]:
        """Names of the structured data items of ``run_id`` (``[]`` if none).

        Raises:
            InvalidNameError: the run id is not a usable name.
        """

    # ------------------------------------------------------------------ derived
    @abc.abstractmethod
    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        """Store derived metrics of ``run_id`` (replaces earlier ones).

        An infinite or NaN float value is stored as its text (``"Infinity"``,
        ``"-Infinity"``, ``"NaN"``), as :meth:`get_derived` returns it.

        Raises:
            InvalidNameError: the run id is not a usable name.
            ValidationError: ``values`` is not a dict.
            ReadOnlyStoreError: the store is read-only.
            OSError: the medium refused the write.
        """

    @abc.abstractmethod
    def get_derived(self, run_id: str) -> dict[str, Any] | None:
        """Derived metrics of ``run_id``, or ``None``.

        Raises:
            InvalidNameError: the run id is not a usable name.
            CorruptRecordError: the stored metrics cannot be parsed.
        """

    # --------------------------------------------------------------- manifests
    @abc.abstractmethod
    def put_experiment_manifest(
        self, experiment_id: str, manifest: dict[str, Any], timestamp: datetime | None = None
    ) -> None:
        """Store one experiment manifest (a new file per call, never overwritten).

        Raises:
            InvalidNameError: ``experiment_id`` is not a usable id.
            ScopeError: the store is scoped to another experiment.
            ValidationError: ``manifest`` is not a dict.
            ReadOnlyStoreError: the store is read-only.
            OSError: the medium refused the write.
        """

    @abc.abstractmethod
    def list_experiment_manifests(
        self, experiment_id: str
    ) -> list[tuple[datetime, dict[str, Any]]]:
        """All manifests of ``experiment_id``, oldest first (``[]`` if none).

        Raises:
            InvalidNameError: ``experiment_id`` is not a usable id.
            ScopeError: the store is scoped to another experiment.
            CorruptRecordError: a stored manifest cannot be parsed.
        """

    def get_experiment_manifest(self, experiment_id: str) -> dict[str, Any] | None:
        """The newest manifest of ``experiment_id``, or ``None``."""
        manifests = self.list_experiment_manifests(experiment_id)
        return manifests[-1][1] if manifests else None

    # -------------------------------------------------------------- collection
    @abc.abstractmethod
    def list_experiments(self) -> list[str]:
        """Experiment ids that have data in this store (its own id if scoped).

        Raises:
            CorruptRecordError: the store's own metadata cannot be parsed (an
                experiment folder whose metadata cannot be parsed is reported
                as a warning and left out).
            OSError: the medium cannot be listed.
        """

    def get_working_directory(self) -> str:
        """The local folder of this store's files (only if ``supports_working_directory``)."""
        raise NotImplementedError(f"{type(self).__name__} has no working directory")

    # -------------------------------------------------------------------- index
    def rebuild_index(self, progress: Progress | None = None) -> int:
        """Rebuild the store's query index from its files (only if ``supports_index``).

        The files are the source of truth; the index (a FileStore's catalog,
        a PostgresStore's tables) only speeds up queries.  Rebuilds the
        index of the store's scope: one experiment if scoped, else all.

        Args:
            progress: called as ``progress(done, total_or_None)``.

        Returns:
            how much was read or indexed, counted in :attr:`index_unit`
            (FileStore: files read; PostgresStore: runs indexed).

        Raises:
            NotImplementedError: the store keeps no query index.
            ReadOnlyStoreError: the store is read-only.
            StoreError: the index cannot be written
                (:class:`~metalab.IndexUnavailableError`: it cannot be reached).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no query index to rebuild (supports_index is False); "
            "its queries read the files"
        )

    # ----------------------------------------------------- claims, heartbeats
    #: :meth:`try_claim` really excludes other launches (otherwise it always succeeds)
    supports_claims: ClassVar[bool] = False

    def try_claim(self, run_id: str, owner: str, stale_after: float) -> bool:
        """Claim ``run_id`` for ``owner`` before executing it; False if someone else holds it.

        ``owner`` is an owner string (``host:pid:boot:pidns:start:token``, see
        :mod:`metalab._internal._owner`); ``owner`` itself may re-claim.  A
        stale claim is taken over: at once when its owner is certainly dead
        (this host and boot, pid gone, a zombie or reused), when it is empty
        or unreadable debris older than a two-second grace, and otherwise once
        its heartbeat (:meth:`touch_heartbeat`) is older than ``stale_after``
        seconds.  Claims keep two launches of one experiment from executing a
        run at the same time; a store without claim support
        (``supports_claims = False``) always returns True.

        Raises:
            OSError / StoreError: the claim cannot be written (disk full,
                read-only folder); nothing is left behind.
        """
        return True

    def claim_holder(self, run_id: str) -> tuple[str, float] | None:
        """(owner string, seconds since its last heartbeat) of the claim on
        ``run_id``, live or stale; None if unclaimed (always None without claim support)."""
        return None

    def touch_heartbeat(self, run_id: str, owner: str) -> bool:
        """Refresh the claim of ``run_id``; False if ``owner`` no longer holds it.

        Raises:
            ReadOnlyStoreError: the store is read-only (as every write method).
        """
        return True

    def release_claim(self, run_id: str, owner: str) -> None:  # noqa: B027 - optional hook
        """Drop the claim of ``run_id`` if ``owner`` holds it (idempotent)."""

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and handles (idempotent)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Stores pickle as their config and reconnect on load.
        return (_reconnect, (self.config,))


_guard_writes(Store)  # (its own default write methods: claims, log_path, rebuild_index)


def _reconnect(config: StoreConfig) -> Store:
    return config.connect()
