"""Results: an immutable, ordered collection of runs read from a store."""

from __future__ import annotations

import difflib
import html
import logging
import os
import reprlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, overload

from metalab._errors import CorruptRecordError, NotFoundError, ValidationError
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._gc import gc_paused
from metalab._internal._json import NON_FINITE_TEXTS, decode_values, encode_values
from metalab.analysis._columns import RunTable
from metalab.analysis._context import ResultsContext
from metalab.analysis._curate import annotate
from metalab.analysis._dataframe import frame
from metalab.analysis._deps import require
from metalab.analysis._derived import (
    DerivedFn,
    compute_derived_for_run,
    resolve_derived_many,
)
from metalab.analysis._frames import (
    add_computed_columns,
    csv_target,
    display,
    naming,
    render_text,
    summarize,
    table,
    tracked,
)
from metalab.analysis._run import Run
from metalab.analysis._tables import ordered_keys
from metalab.model import RunRecord, Status
from metalab.query import record_problem

if TYPE_CHECKING:
    import pandas as pd

    from metalab.store import Store

__all__ = ["Results"]

log = logging.getLogger("metalab.analysis")

_STATUS_VALUES = frozenset(s.value for s in Status)
#: Run views built at a time (with the cyclic GC paused) while iterating over Results
_ITER_BATCH = 2000
#: longest text shown whole in a cell of ``Results.table()`` (longer ones end in "...")
_MAX_CELL_TEXT = 40
#: field names listed in the message of an unknown filter() field
_LISTED_FIELDS = 30
_NAMESPACES = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "derived": "derived",
}

_cell = reprlib.Repr()
_cell.maxstring = 40
_cell.maxother = 40
_cell.maxlist = 4
_cell.maxdict = 4

Report = Callable[[CorruptRecordError], None]


def _default_report(exc: CorruptRecordError) -> None:
    log.warning("skipping unreadable run record: %s", exc)


def _doc_problem(doc: Any, store: Store, position: int) -> CorruptRecordError | None:
    """Cheap structural check of a raw run document (no full parse): the rule of
    :func:`~metalab.query.record_problem`, which every reader applies."""
    why = record_problem(doc)
    if why is None:
        return None
    if type(doc) is not dict:
        return CorruptRecordError(f"run record #{position} {why}", None)
    source = _record_source(store, doc.get("run_id"), position)
    return CorruptRecordError(f"run record {source} {why}", source)


def _record_source(store: Store, run_id: Any, position: int) -> str:
    if isinstance(run_id, str) and store.supports_working_directory:
        try:
            return os.path.join(store.get_working_directory(), "runs", f"{run_id}.json")
        except NotImplementedError:  # pragma: no cover
            pass
    return repr(run_id) if isinstance(run_id, str) else f"#{position}"


def _sort_key(doc: dict[str, Any]) -> str:
    # a string key (no tuple per run): never-started runs sort last
    return (doc.get("started_at") or "\U0010ffff") + "\x00" + doc["run_id"]


def _same(value: Any, target: Any) -> bool:
    # JSON booleans are not numbers: filter(flag=1) must not match True
    if isinstance(value, bool) != isinstance(target, bool):
        return False
    try:
        return bool(value == target)
    except Exception:  # == raised, or gave no truth value (an array): not a match
        return False


def _matcher(condition: Any) -> Callable[[Any], bool]:
    if callable(condition):
        return lambda v: bool(condition(v))
    if isinstance(condition, list | tuple | set | frozenset):
        options = list(condition)
        return lambda v: any(_same(v, o) for o in options)
    return lambda v: _same(v, condition)


_EMPTY: dict[str, Any] = {}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value if len(value) <= _MAX_CELL_TEXT else value[: _MAX_CELL_TEXT - 3] + "..."
    return _cell.repr(value)


class Results:
    """An immutable, ordered collection of runs (ordered by ``started_at``, then ``run_id``).

    Holds the raw run documents and builds :class:`Run` /
    :class:`~metalab.model.RunRecord` objects only when asked, so loading and
    tabulating many runs stays close to the cost of reading the files.
    Loaded from a PostgreSQL index it holds columns instead (a
    :class:`~metalab.analysis._columns.RunTable`): tables, slices and
    filters on params / metrics / status use them, and the record
    documents are fetched in batches only when something needs them
    (``run.record``, :meth:`where`, ...).

    Indexing: ``results[i]`` is a :class:`Run`, ``results[a:b]`` a
    :class:`Results`, ``results["<run_id>"]`` the run with that id.  Slices
    and filters share the store and the derived-metrics cache with the
    collection they come from.

    Thread safety: reading methods may be called from several threads;
    :meth:`compute_derived` must not run concurrently with itself.

    Attributes:
        problems: the unreadable run files skipped while loading (each a
            :class:`~metalab.CorruptRecordError` whose ``path`` names the file).
    """

    __slots__ = ("_cols", "_ctx", "_docs_", "_index", "_problems", "_runs")

    def __init__(
        self,
        store: Store,
        documents: Iterable[dict[str, Any]],
        *,
        problems: Iterable[CorruptRecordError] = (),
    ) -> None:
        """Build a collection from a store and its raw run documents.

        Documents that are not valid run records are skipped, logged and
        added to :attr:`problems`.
        """
        found = list(problems)
        docs = _valid_documents(store, documents, found.append, _default_report)
        self._setup(ResultsContext(store, report=_default_report), docs, tuple(found))

    @classmethod
    def _build(
        cls,
        store: Store,
        documents: Iterable[dict[str, Any]],
        problems: list[CorruptRecordError],
        report: Report,
        keep_order: bool = False,
    ) -> Results:
        docs = _valid_documents(store, documents, problems.append, report, keep_order)
        self = cls.__new__(cls)
        self._setup(ResultsContext(store, report=report), docs, tuple(problems))
        return self

    @classmethod
    def _from_table(
        cls,
        store: Store,
        table: RunTable,
        problems: list[CorruptRecordError],
        report: Report,
    ) -> Results:
        """Runs given as columns (from a query index); documents are built when needed."""
        self = cls.__new__(cls)
        self._setup(ResultsContext(store, report=report), None, tuple(problems), table)
        return self

    def _setup(
        self,
        ctx: ResultsContext,
        docs: tuple[dict[str, Any], ...] | None,
        problems: tuple[CorruptRecordError, ...],
        cols: RunTable | None = None,
    ) -> None:
        self._ctx = ctx
        self._docs_ = docs
        self._cols = cols
        self._problems = problems
        self._runs: list[Run | None] | None = None
        self._index: dict[str, int] | None = None

    @property
    def _docs(self) -> tuple[dict[str, Any], ...]:
        """The run documents (of a table: the verbatim records, fetched on first use)."""
        docs = self._docs_
        if docs is None:
            table = self._cols
            assert table is not None
            with gc_paused():
                full = table.full_documents()
                docs = tuple(
                    doc if doc is not None else table.row_document(i)
                    for i, doc in enumerate(full)
                )
            self._docs_ = docs
        return docs

    def _take(self, rows: list[int] | slice) -> Results:
        """The runs at ``rows`` (positions in order, or a slice), keeping the columns."""
        new = Results.__new__(Results)
        docs = self._docs_
        if docs is not None:
            docs = docs[rows] if isinstance(rows, slice) else tuple(docs[i] for i in rows)
        cols = self._cols.take(rows) if self._cols is not None else None
        new._setup(self._ctx, docs, self._problems, cols)
        return new

    def _column(self, name: str) -> list[Any]:
        """One top-level field of every run (from the columns when there are any)."""
        if self._cols is not None:
            return self._cols.column(name)
        return [d.get(name) for d in self._docs]

    def _eval_docs(self, full: bool) -> Iterable[dict[str, Any]]:
        """Documents to test filters on: the records, or (``full=False``) rows of the table."""
        if self._docs_ is not None or self._cols is None or full:
            return self._docs
        table = self._cols
        return (table.row_document(i) for i in range(len(table)))

    # -------------------------------------------------------------- basics
    @property
    def store(self) -> Store:
        """The store the runs were read from."""
        return self._ctx.store

    @property
    def problems(self) -> tuple[CorruptRecordError, ...]:
        return self._problems

    @property
    def experiments(self) -> list[str]:
        """Sorted ids of the experiments present in this collection."""
        return sorted(set(self._column("experiment_id")))

    @property
    def run_ids(self) -> list[str]:
        return list(self._column("run_id"))

    @property
    def runs(self) -> list[Run]:
        return list(self)

    @property
    def records(self) -> list[RunRecord]:
        """Parsed records of all runs (raises CorruptRecordError on an invalid one)."""
        return [run.record for run in self]

    def __len__(self) -> int:
        return len(self._cols) if self._cols is not None else len(self._docs)

    def __bool__(self) -> bool:
        return len(self) > 0

    def _run_at(self, i: int) -> Run:
        runs = self._runs
        if runs is None:
            runs = self._runs = [None] * len(self)
        run = runs[i]
        if run is None:
            if self._docs_ is None and self._cols is not None:
                doc = self._cols.row_document(i)  # the record is fetched when needed
            else:
                doc = self._docs[i]
            run = runs[i] = Run(doc, self._ctx)
        return run

    def __iter__(self) -> Iterator[Run]:
        n = len(self)
        for start in range(0, n, _ITER_BATCH):
            # build the next Run views in one go with the cyclic GC paused (many
            # small objects next to a large heap of documents: see _internal._gc)
            with gc_paused():
                chunk = [self._run_at(i) for i in range(start, min(start + _ITER_BATCH, n))]
            yield from chunk

    @overload
    def __getitem__(self, key: int) -> Run: ...
    @overload
    def __getitem__(self, key: str) -> Run: ...
    @overload
    def __getitem__(self, key: slice) -> Results: ...

    def __getitem__(self, key: int | str | slice) -> Run | Results:
        if isinstance(key, slice):
            return self._take(key)
        if isinstance(key, str):
            index = self._index
            if index is None:
                index = {}
                for pos, rid in enumerate(self._column("run_id")):
                    index.setdefault(rid, pos)
                self._index = index
            found = index.get(key)
            if found is None:
                close = difflib.get_close_matches(key, list(index), n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise NotFoundError(f"no run with id {key!r} in these {len(self)} runs{hint}")
            return self._run_at(found)
        if isinstance(key, int) and not isinstance(key, bool):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"run index {key} out of range for {n} runs")
            return self._run_at(key % n)
        raise TypeError(
            f"Results indices must be int, slice or run id str, not {type(key).__name__}"
        )

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Run):
            return any(
                r == item.run_id and e == item.experiment_id
                for e, r in zip(self._column("experiment_id"), self._column("run_id"), strict=True)
            )
        if isinstance(item, str):
            return item in self._column("run_id")
        return False

    # ----------------------------------------------------------- selecting
    @property
    def successful(self) -> Results:
        """Runs with status ``success``."""
        return self.by_status(Status.SUCCESS)

    @property
    def failed(self) -> Results:
        """Runs with status ``failed``."""
        return self.by_status(Status.FAILED)

    def by_status(self, status: Status | str | Iterable[Status | str]) -> Results:
        """Runs whose status is ``status`` (or one of several).

        Raises:
            ValidationError: an unknown status value.
        """
        wanted = _statuses(status)
        return self._take([i for i, s in enumerate(self._column("status")) if s in wanted])

    def subset(self, run_ids: Iterable[str]) -> Results:
        """The runs whose id is in ``run_ids``, in this collection's order.

        Ids this collection does not hold are ignored.
        """
        wanted = set(run_ids)
        return self._take([i for i, rid in enumerate(self.run_ids) if rid in wanted])

    def filter(
        self,
        status: Status | str | Iterable[Status | str] | None = None,
        *,
        tags: str | Iterable[str] | None = None,
        **criteria: Any,
    ) -> Results:
        """Runs matching every given condition.

        ``status``: one status or several.  ``tags``: a tag or several, all
        of which the run must carry.  Each other keyword names a parameter, a
        metric or a derived metric (looked up in that order; use
        ``**{"params.x": ...}``, ``"metrics.y"`` or ``"derived.z"`` to be
        explicit).  Its value is either a constant (equality), a list, tuple
        or set (membership), or a callable predicate taking the value.  Runs
        that lack the field do not match.

        Raises:
            ValidationError: an unknown status, an unknown field (the message
                lists close names), or a bare name that is both a parameter
                and a metric.
        """
        # (position, document) pairs; a table is tested on its rows, or on
        # the records when tags are asked for (the table has no tags)
        pairs: Iterable[tuple[int, dict[str, Any]]] = enumerate(self._eval_docs(tags is not None))
        if status is not None:
            wanted = _statuses(status)
            pairs = [(i, d) for i, d in pairs if d["status"] in wanted]
        if tags is not None:
            need = {tags} if isinstance(tags, str) else set(tags)
            pairs = [(i, d) for i, d in pairs if need.issubset(d.get("tags") or ())]
        if criteria and len(self):
            for key, condition in criteria.items():
                namespace, name = self._resolve_field(key)
                match = _matcher(condition)
                pairs = [(i, d) for i, d in pairs if self._has_match(d, namespace, name, match)]
        return self._take([i for i, _ in pairs])

    def _has_match(
        self, doc: dict[str, Any], namespace: str, name: str, match: Callable[[Any], bool]
    ) -> bool:
        if namespace == "derived":
            values = self._ctx.derived_of(doc["experiment_id"], doc["run_id"]) or {}
        else:
            values = doc.get(namespace) or {}
        if name not in values:
            return False
        return match(values[name])

    def _field_names(self, namespace: str) -> list[str]:
        if namespace == "derived":
            return ordered_keys(self._derived_list())
        if self._cols is not None and self._docs_ is None:
            return self._cols.names(namespace)
        return ordered_keys(d.get(namespace) or {} for d in self._docs)

    def _resolve_field(self, key: str) -> tuple[str, str]:
        prefix, dot, rest = key.partition(".")
        if dot and prefix in _NAMESPACES and rest:
            namespace = _NAMESPACES[prefix]
            names = self._field_names(namespace)
            if rest not in names:
                raise _unknown_field(key, [f"{namespace}.{n}" for n in names])
            return namespace, rest
        params = self._field_names("params")
        metrics = self._field_names("metrics")
        in_params, in_metrics = key in params, key in metrics
        if in_params and in_metrics:
            raise ValidationError(
                f"{key!r} is both a parameter and a metric; say which with "
                f"**{{'params.{key}': ...}} or **{{'metrics.{key}': ...}}"
            )
        if in_params:
            return "params", key
        if in_metrics:
            return "metrics", key
        derived = self._field_names("derived")
        if key in derived:
            return "derived", key
        raise _unknown_field(key, [*params, *metrics, *derived])

    def where(self, query: str | None = None, /, **keywords: Any) -> Results:
        """Runs matching a query of the filter language (see docs/queries.md).

        ``query``: text such as ``"params.lr < 0.01 and metrics.score >= 0.9"``;
        ``keywords``: the keyword form (``status="success"``,
        ``**{"params.lr": 0.01}``; a list means ``in``, ``None`` means
        ``is null``), joined with ``and``.  Evaluated in memory over the
        loaded runs, with the same rules as the stores' query engines; the
        order of the runs is kept.

        Raises:
            QuerySyntaxError: malformed text (the message points at it).
            UnknownFieldError: a field no run has (close names are listed).
        """
        from metalab.query import build_query, known_fields, lost_cutoff
        from metalab.query._ast import check_fields
        from metalab.query._eval import predicate

        q = build_query(query, keywords=keywords)
        derived = self._derived_list() if q.uses_derived else []
        docs = self._docs  # the records (a table holds no tags or heartbeats)
        check_fields(q, lambda: known_fields(docs, (d for d in derived if d)),
                     any_runs=bool(docs))
        match = predicate(q.where, lost_cutoff())
        if derived:
            keep = [i for i, (doc, der) in enumerate(zip(docs, derived, strict=True))
                    if match(doc, der)]
        else:
            keep = [i for i, doc in enumerate(docs) if match(doc, None)]
        return self._take(keep)

    # ------------------------------------------------------------ curation
    def tag(self, *tags: str) -> list[str]:
        """Add ``tags`` to every run here, in the store (see
        :meth:`~metalab.store.Store.annotate_runs`: every later read and query
        sees them; this object stays as loaded).  Returns the run ids changed."""
        return annotate(self._ctx, self._column("experiment_id"), self.run_ids, add=tags)

    def untag(self, *tags: str) -> list[str]:
        """Take ``tags`` from every run here (also tags they had from execution
        time), as :meth:`tag` does.  Returns the run ids changed."""
        return annotate(self._ctx, self._column("experiment_id"), self.run_ids, remove=tags)

    def set_note(self, note: str | None) -> list[str]:
        """Set the note of every run here (None: drop the note set after the
        fact), as :meth:`tag` does.  Returns the run ids changed."""
        return annotate(self._ctx, self._column("experiment_id"), self.run_ids, note=note)

    def to_arrow(self, include_derived: bool = True) -> Any:
        """A ``pyarrow.Table`` with the columns of :meth:`to_dataframe`.

        Raises:
            MissingDependencyError: pyarrow is not installed.
        """
        from metalab.analysis._tables import to_arrow

        return to_arrow(self, include_derived)

    def to_polars(self, include_derived: bool = True) -> Any:
        """A ``polars.DataFrame`` with the columns of :meth:`to_dataframe`.

        Raises:
            MissingDependencyError: polars (extra ``polars``) is not installed.
        """
        from metalab.analysis._tables import to_polars

        return to_polars(self, include_derived)

    def to_parquet(self, path: str | os.PathLike[str], include_derived: bool = True) -> str:
        """Write the table of :meth:`to_arrow` as Parquet to ``path`` atomically."""
        from metalab.analysis._tables import to_parquet

        return to_parquet(self, path, include_derived)

    def metric_series(self, names: str | Iterable[str]) -> pd.DataFrame:
        """Stepped series of all runs as a tidy table: one row per run and step, with
        run_id, experiment_id, the ``params.<name>`` columns, name, step, value
        (see :func:`metalab.analysis._tables.metric_series`)."""
        from metalab.analysis._tables import metric_series

        return metric_series(self, names)

    def aggregate(
        self,
        by: str | Iterable[str] = "params",
        metrics: Iterable[str] | None = None,
        stats: Iterable[str] = ("mean", "std", "count"),
        *,
        names: str | None = None,
    ) -> pd.DataFrame:
        """Summarise metrics over groups of runs, e.g. the seed replicates of each case.

        See :func:`metalab.analysis._tables.aggregate`: one row per group with
        ``params.<name>`` (``param_<name>`` with ``names="original"``),
        ``n_runs`` and ``<metric>_<stat>`` columns.
        """
        from metalab.analysis._tables import aggregate

        return aggregate(
            self,
            by if isinstance(by, str) else list(by),
            None if metrics is None else list(metrics),
            list(stats),
            names,
        )

    # ------------------------------------------------- sorting and cutting
    def sort_by(self, fields: str | Iterable[str], descending: bool | Iterable[bool] = False) -> Results:
        """The runs ordered by ``fields`` (``"metrics.loss"``, ``["params.lr", "metrics.loss"]``).

        Names and order are the query language's (see :mod:`metalab.analysis._ordering`):
        runs without a value last, NaN above ``+inf``, ties by experiment and
        run id.  ``descending``: one bool, or one per field.

        Raises:
            QueryError / UnknownFieldError / ValidationError: see
                :func:`~metalab.analysis._ordering.sorted_positions`.
        """
        from metalab.analysis._ordering import sorted_positions

        names = fields if isinstance(fields, str) else list(fields)
        flags = descending if isinstance(descending, bool) else list(descending)
        return self._take(sorted_positions(self, names, flags))

    def head(self, n: int = 5) -> Results:
        """The first ``n`` runs (all of them if there are fewer).

        Raises:
            ValidationError: ``n`` is not an int >= 0.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValidationError(f"head(n) needs an int n >= 0, got {n!r}")
        return self._take(slice(0, n))

    def best(self, metric: str, mode: str = "min") -> Run:
        """The run with the lowest (``mode="min"``) or highest (``"max"``) finite ``metric``.

        See :func:`~metalab.analysis._ordering.best_position` (what competes,
        how ties are broken, what is raised).
        """
        from metalab.analysis._ordering import best_position

        return self._run_at(best_position(self, metric, mode))

    # ------------------------------------------------------------- derived
    def _load_derived(self, experiments: Iterable[str] | None = None) -> None:
        eids, rids = self._column("experiment_id"), self._column("run_id")
        if experiments is None:
            experiments = set(eids)

        def run_ids_of(experiment_id: str) -> set[str]:
            return {r for e, r in zip(eids, rids, strict=True) if e == experiment_id}

        self._ctx.load_derived(experiments, run_ids_of)

    def _derived_list(self, experiments: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Derived values of every run, in order (``{}`` where none; ``[]`` if no run has any)."""
        self._load_derived(experiments)
        known = self._ctx.derived_snapshot()
        if not known:
            return []
        return [known.get(k) or {} for k in zip(self._column("experiment_id"),
                                                 self._column("run_id"), strict=True)]

    def _maps(self, namespace: str) -> list[dict[str, Any]]:
        """The ``params`` / ``metrics`` of every run, in order (from the columns if any)."""
        if self._cols is not None:
            return self._cols.maps(namespace)
        return [d.get(namespace) or _EMPTY for d in self._docs]

    def compute_derived(
        self,
        fns: DerivedFn | str | Iterable[DerivedFn | str],
        *,
        overwrite: bool = False,
        progress: bool = False,
    ) -> Results:
        """Compute derived metrics for every run and store them (``progress``: a bar on
        stderr while they are computed, when rich is installed).

        ``fns`` is one function or a list of them; each is a callable
        ``fn(run) -> dict`` or a ``"module:function"`` reference.  The new
        values are merged with the run's stored ones: existing keys are kept
        unless ``overwrite=True``.  Changed values are persisted with
        ``store.put_derived``.  A failing function is logged (naming the run
        and the function) and skipped.  Returns ``self``; the values are
        then visible through :attr:`Run.derived` and :meth:`to_dataframe`.

        Raises:
            ValidationError: a reference in ``fns`` cannot be resolved.
        """
        resolved = [fn for _, fn in resolve_derived_many(fns)]
        self._load_derived()
        ctx = self._ctx
        for run in tracked(self, len(self), "derived metrics", progress):
            new = compute_derived_for_run(run, resolved)
            if not new:
                continue
            eid, rid = run.experiment_id, run.run_id
            existing = ctx.derived_of(eid, rid) or {}
            merged = {**existing, **new} if overwrite else {**new, **existing}
            if merged == existing:
                continue
            store = ctx.store_for(eid)
            if store.read_only:
                log.warning(
                    "store is read-only: derived metrics of run %s are kept in memory only", rid
                )
            else:
                store.put_derived(rid, encode_values(merged))  # (inf, NaN: as texts)
            ctx.set_derived(eid, rid, merged)
        return self

    # ---------------------------------------------------------- tabulating
    def to_dataframe(
        self,
        include_params: bool = True,
        include_metrics: bool = True,
        include_derived: bool = True,
        include_record: bool = True,
        *,
        derived_metrics: DerivedFn | str | Iterable[DerivedFn | str] | None = None,
        artifact_reducers: dict[str, Callable[..., dict[str, Any]]] | None = None,
        names: str | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per run, built column-wise from the stored documents.

        Columns: ``run_id``; with ``include_record`` ``experiment_id``,
        ``status``, ``started_at``, ``finished_at`` (UTC timestamps),
        ``duration_ms`` and ``context_fingerprint`` (None when the record has
        none); then ``params.<name>``, metrics by name (``metrics.<name>`` on a
        clash with a column above) and ``derived.<name>``; ``names="original"``
        gives ``param_<name>`` / ``metric_<name>`` / ``derived_<name>`` (see
        :mod:`metalab.analysis._frames`).  Missing values are ``NaN``/``None``.
        ``derived_metrics`` (``fn(run) -> dict`` or ``"module:function"``) add
        derived columns computed now, not stored; ``artifact_reducers`` map an
        artifact name to ``fn(artifact[, run]) -> dict`` whose keys become
        columns (NaN without the artifact; a failing reducer is logged);
        ``progress`` shows a bar while those run.

        Raises:
            MissingDependencyError: pandas is not installed.
            ValidationError: unknown ``names``, unresolvable derived metric.
        """
        pd = require("pandas", "pandas", "Results.to_dataframe()")
        n = naming(names)
        df = frame(self, pd, n, include_params, include_metrics, include_derived, include_record)
        if derived_metrics is None and not artifact_reducers:
            return df
        runs = tracked(self, len(self), "computing columns", progress)
        return add_computed_columns(df, list(runs), derived_metrics, artifact_reducers, n)

    def to_csv(self, path: str | os.PathLike[str], *, include_fingerprints: bool = True,
               timestamp: bool = False, **dataframe_kwargs: Any) -> str:
        """Write :meth:`to_dataframe` (keywords go to it) as CSV atomically; return the path.

        An existing folder (or a path ending in a separator) gets ``results_<stamp>.csv`` inside,
        ``timestamp=True`` adds ``_<stamp>`` to a file name (see
        :func:`metalab.analysis._frames.csv_target`); ``include_fingerprints=False``
        drops the ``*_fingerprint`` columns.  Parent folders are created.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        df = self.to_dataframe(**dataframe_kwargs)
        if not include_fingerprints:
            df = df.drop(columns=[c for c in df.columns if str(c).endswith("_fingerprint")])
        target = csv_target(path, timestamp)
        atomic_write_bytes(target, df.to_csv(index=False).encode("utf-8"))
        return target

    def load(self, run_id: str, name: str) -> Any:
        """The artifact ``name`` of run ``run_id`` (the original metalab's ``Results.load``).

        Raises:
            NotFoundError: no such run in this collection, or no such artifact.
        """
        return self[run_id].artifact(name)

    def _table(self, n: int, names: str | None = None) -> tuple[list[str], list[list[str]]]:
        if self._docs_ is None and self._cols is not None:
            table = self._cols
            docs: Any = [table.row_document(i) for i in range(min(max(n, 0), len(table)))]
        else:
            docs = self._docs[: max(n, 0)]
        multi = len(set(self._column("experiment_id"))) > 1
        params = ordered_keys(d.get("params") or {} for d in docs)
        metrics = ordered_keys(d.get("metrics") or {} for d in docs)
        headers = ["run_id", *(["experiment"] if multi else []), "status", "duration_ms"]
        headers += [naming(names).param(k) for k in params] + list(metrics)
        rows = []
        for d in docs:
            p = d.get("params") or {}
            m = d.get("metrics") or {}
            row = [d["run_id"], *([d["experiment_id"]] if multi else []), d["status"]]
            row.append(_fmt(d.get("duration_ms")))
            row += [_fmt(p.get(k)) for k in params] + [_fmt(m.get(k)) for k in metrics]
            rows.append(row)
        return headers, rows

    def table(self, n: int | None = None, *, as_dataframe: bool | None = None,
              names: str | None = None) -> Any:
        """``table()`` / ``table(n)``: the first ``n`` runs (default 20) as printable text;
        ``table(as_dataframe=False)`` (the original metalab's form): one dict per run;
        ``as_dataframe=True`` (or ``table(True)``): those rows as a DataFrame.  See
        :func:`metalab.analysis._frames.table`; ``names`` as in :meth:`to_dataframe`.

        Raises:
            ValidationError: ``n`` together with ``as_dataframe``; unknown ``names``.
        """
        return table(self, n, as_dataframe, names)

    def summary(self) -> dict[str, Any]:
        """Counts and durations (the original metalab's summary): ``total_runs``,
        ``by_status``, ``avg_duration_ms``, ``min_duration_ms``, ``max_duration_ms``
        (``None`` when no run has a duration)."""
        return summarize(self._docs)

    def display(self, group_by: str | Iterable[str] | None = None, *, show_summary: bool = True,
                file: TextIO | None = None) -> str:
        """Print the :meth:`summary` and, with ``group_by`` (fields named as in
        :meth:`filter`), success/failed/total per group; returns the text.

        Raises:
            ValidationError: an unknown field in ``group_by``.
        """
        return display(self, group_by, show_summary, file)

    def _text(self, n: int, names: str | None) -> str:
        headers, rows = self._table(n, names)
        footer = f"{len(self) - len(rows)} more runs" if len(self) > len(rows) else ""
        return render_text(headers, rows, repr(self), footer)

    def __repr__(self) -> str:
        counts = Counter(self._column("status"))
        by_status = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
        exps = self.experiments
        if len(exps) == 1:
            where = f" of {exps[0]!r}"
        elif exps:
            where = f" of {len(exps)} experiments"
        else:
            where = ""
        detail = f": {by_status}" if by_status else ""
        extra = f", {len(self._problems)} unreadable" if self._problems else ""
        return f"Results({len(self)} runs{where}{detail}{extra})"

    def _repr_html_(self, n: int = 20) -> str:
        headers, rows = self._table(n)
        from metalab.analysis._plots_html import results_media_html

        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        more = (
            f"<p>... {len(self) - len(rows)} more runs</p>" if len(self) > len(rows) else ""
        )
        return (
            f"<div class='metalab-results'><p>{esc(repr(self))}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"
            f"{results_media_html(self, len(rows))}</div>"
        )

    def plot(self, kind: str = "scatter", x: str | None = None, y: str | None = None,
             group: str | None = None, over_seeds: bool = True, band: str | None = "ci95",
             *, bins: int = 50, max_points: int = 5000) -> Any:
        """A chart of these runs as a plotly ``Figure`` (renders in Jupyter).

        The arguments are those of :class:`~metalab.analysis.PlotSpec`; the
        figure is :func:`~metalab.analysis.plot_figure` (the web UI's charts).

        Raises:
            ValidationError: a bad setting or a field no run has.
            MissingDependencyError: plotly, numpy or pandas is missing (extra ``ui``).
        """
        from metalab.analysis._plots import PlotSpec, figure_object, plot_figure

        spec = PlotSpec(kind, x, y, group, over_seeds, band, bins, max_points)
        return figure_object(plot_figure(self, spec))


def _statuses(status: Status | str | Iterable[Status | str]) -> frozenset[str]:
    items = [status] if isinstance(status, str | Status) else list(status)
    out = set()
    for s in items:
        value = s.value if isinstance(s, Status) else str(s).lower()
        if value not in _STATUS_VALUES:
            raise ValidationError(
                f"unknown run status {s!r}; use one of {', '.join(sorted(_STATUS_VALUES))}"
            )
        out.add(value)
    return frozenset(out)


def _unknown_field(key: str, known: list[str]) -> ValidationError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(map(repr, known[:_LISTED_FIELDS])) or "none"
    return ValidationError(
        f"unknown field {key!r} in filter(); known params, metrics and derived metrics: "
        f"{listed}.{hint}"
    )


def _valid_documents(
    store: Store,
    documents: Iterable[Any],
    collect: Report,
    report: Report,
    keep_order: bool = False,
) -> tuple[dict[str, Any], ...]:
    docs = []
    texts = NON_FINITE_TEXTS.keys()
    with gc_paused():  # bulk parse: see metalab._internal._gc
        for pos, doc in enumerate(documents):
            problem = _doc_problem(doc, store, pos)
            if problem is None:
                # metrics stored as "Infinity" / "-Infinity" / "NaN" are those floats
                metrics = doc.get("metrics")
                try:
                    plain = type(metrics) is not dict or texts.isdisjoint(metrics.values())
                except TypeError:  # a list or object among the values
                    plain = False
                docs.append(doc if plain else {**doc, "metrics": decode_values(metrics)})
            else:
                collect(problem)
                report(problem)
    if not keep_order:
        docs.sort(key=_sort_key)
    return tuple(docs)
