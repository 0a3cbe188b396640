"""``load_results``: open a store (or a path to one) and read its runs."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from metalab._errors import CorruptRecordError, ScopeError, ValidationError
from metalab.analysis._columns import RunTable
from metalab.analysis._results import Results
from metalab.store import ErrorCallback, Store, StoreConfig, make_config, make_store

__all__ = ["load_results"]

log = logging.getLogger("metalab.analysis")

#: unreadable files named in load_results' warning (the rest are counted)
_NAMED_PROBLEMS = 3


def load_results(
    store_or_path: str | os.PathLike[str] | StoreConfig | Store | None,
    experiment_id: str | None = None,
    *,
    on_error: ErrorCallback | None = None,
    where: str | Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    order_by: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> Results:
    """Read the runs of a store into a :class:`Results`.

    ``store_or_path`` is a folder path or locator (``"./experiments"``,
    ``"file:///data/exp"``), a :class:`~metalab.store.StoreConfig`, an open
    :class:`~metalab.store.Store`, or ``None`` for the default folder
    ``"./experiments"`` (the rule of :func:`metalab.store.make_store`).

    * With ``experiment_id`` only that experiment's runs are read (a
      collection path is narrowed to the experiment's folder).
    * Without it, a collection holding exactly one experiment is narrowed to
      it, a path to an experiment folder reads that experiment, and a
      collection of several experiments yields all their runs.

    Unreadable run files never abort loading: each is reported to
    ``on_error`` (default: a logged warning naming the file, plus one
    :class:`UserWarning` summarising them) and kept in
    :attr:`Results.problems`.

    Query pushdown: ``where`` (filter text, or a dict in the keyword form),
    ``columns`` (field names such as ``"params.lr"``, ``"metrics"``; the runs
    then hold only those fields plus their identity, status and start time),
    ``order_by`` (``"-metrics.score"``: descending; the runs keep that order)
    and ``limit`` are answered by the store: in SQL for a PostgresStore, from
    the catalog of a FileStore, by a scan otherwise.  See docs/queries.md.

    Only reads; safe to call from several threads or processes while runs
    are being written (a run being written shows its old or its new record).

    Raises:
        NotFoundError: a path that does not exist, or an ``experiment_id``
            that the collection at that path does not hold (the message lists
            the ones it does).
        ScopeError: ``experiment_id`` differs from the one the config or
            store is already scoped to.
        ConfigError: the locator is invalid.
        ValidationError: ``store_or_path`` is none of the above, or a bad
            ``experiment_id``.
    """
    problems: list[CorruptRecordError] = []

    def tell(exc: CorruptRecordError) -> None:
        if on_error is not None:
            on_error(exc)
        else:
            log.warning("skipping unreadable file: %s", exc)

    def collect(exc: CorruptRecordError) -> None:
        problems.append(exc)
        tell(exc)

    store = _open(store_or_path, experiment_id)
    narrow = experiment_id if not store.is_scoped else None
    plain = where is None and columns is None and order_by is None and limit is None
    from metalab.query import problems_to

    with problems_to(collect):  # the files the index skipped (the FileStore catalog names them)
        table = _from_index(store, narrow, where, columns, order_by, limit, plain)
    if table is not None:
        results = _results_of_table(store, table, problems, collect, tell)
    elif plain:
        documents = _mark_lost(store.iter_run_documents(narrow, on_error=collect))
        results = Results._build(store, documents, problems, tell)
    else:
        results = _query_results(
            store, narrow, where, columns, order_by, limit, problems, collect, tell
        )
    if problems and on_error is None:
        _warn_skipped(problems)
    return results


def _results_of_table(
    store: Store,
    table: RunTable,
    problems: list[CorruptRecordError],
    collect: ErrorCallback,
    tell: ErrorCallback,
) -> Results:
    """Results of the rows the store's index answered (rows of damaged files dropped)."""
    table = _valid_rows(store, table, collect)
    results = Results._from_table(store, table, problems, tell)
    if table.projected and any(ns == "derived" for ns, _ in table.fields):
        for (eid, rid), values in zip(table.keys(), table.maps("derived"), strict=True):
            results._ctx.set_derived(eid, rid, values)
    return results


def _query_results(
    store: Store,
    narrow: str | None,
    where: str | Mapping[str, Any] | None,
    columns: Sequence[str] | None,
    order_by: str | Sequence[str] | None,
    limit: int | None,
    problems: list[CorruptRecordError],
    collect: ErrorCallback,
    tell: ErrorCallback,
) -> Results:
    """Results of a query the store answers (:meth:`Store.query_runs`)."""
    from metalab.query import build_query, problems_to

    text = where if where is None or isinstance(where, str) else None
    keywords = dict(where) if isinstance(where, Mapping) else None
    query = build_query(text, columns=columns, order_by=order_by, limit=limit,
                        keywords=keywords)
    with problems_to(collect):  # the files the query skipped
        found = store.query_runs(narrow, query)
    # a projection has no heartbeat: its status is already the effective
    # one (the query engines show a stopped heartbeat as lost)
    shown = _mark_lost(found) if columns is None else found
    results = Results._build(store, shown, problems, tell, keep_order=bool(query.order))
    if columns is not None:
        for doc in found:
            if isinstance(doc.get("derived"), dict):
                results._ctx.set_derived(doc["experiment_id"], doc["run_id"], doc["derived"])
    return results


def _warn_skipped(problems: list[CorruptRecordError]) -> None:
    """One UserWarning (attributed to the caller of load_results) summarising ``problems``."""
    shown = ", ".join(str(p.path or p) for p in problems[:_NAMED_PROBLEMS])
    more = (
        f" and {len(problems) - _NAMED_PROBLEMS} more" if len(problems) > _NAMED_PROBLEMS else ""
    )
    warnings.warn(
        f"load_results skipped {len(problems)} unreadable run file(s): {shown}{more}; "
        "see results.problems",
        UserWarning,
        stacklevel=3,
    )


def _from_index(
    store: Store,
    narrow: str | None,
    where: str | Mapping[str, Any] | None,
    columns: Sequence[str] | None,
    order_by: str | Sequence[str] | None,
    limit: int | None,
    plain: bool,
) -> RunTable | None:
    """The runs as columns from the store's query index, or None (no index, or not current).

    Only stores with ``supports_run_table`` (PostgresStore) have one: the
    answer then needs no record parsing; see :class:`RunTable`.
    """
    if not store.supports_run_table:
        return None
    query = None
    if not plain:
        from metalab.query import build_query

        text = where if where is None or isinstance(where, str) else None
        keywords = dict(where) if isinstance(where, Mapping) else None
        query = build_query(text, columns=columns, order_by=order_by, limit=limit,
                            keywords=keywords)
    answer = store.run_table(narrow, query)
    if answer is None:
        return None
    return RunTable.from_index(answer, store.read_run_documents)


def _valid_rows(store: Store, table: RunTable, collect: Any) -> RunTable:
    """Leave out (and report) rows the file scan would reject (e.g. an unknown status)."""
    from metalab.model import Status

    known = {s.value for s in Status}
    bad = [i for i, s in enumerate(table.column("status")) if s not in known]
    if not bad:
        return table
    from metalab.analysis._results import _doc_problem

    for i in bad:
        doc = {"run_id": table.column("run_id")[i], "status": table.column("status")[i],
               "experiment_id": table.column("experiment_id")[i]}
        problem = _doc_problem(doc, store, i)
        if problem is not None:
            collect(problem)
    skip = set(bad)
    return table.take([i for i in range(len(table)) if i not in skip])


def _open(target: Any, experiment_id: str | None) -> Store:
    if experiment_id is not None and (not isinstance(experiment_id, str) or not experiment_id):
        raise ValidationError(
            f"experiment_id must be a non-empty string such as 'my_exp:1.0', got {experiment_id!r}"
        )
    if isinstance(target, Store):
        return _open_store(target, experiment_id)
    if isinstance(target, StoreConfig):
        store = make_store(target, experiment_id=experiment_id)
        return _narrowed_own(store, experiment_id=None, strict=False)
    # None (the default folder), a path or a locator; make_config rejects anything else
    config = make_config(target, must_exist=True)
    if experiment_id is not None:
        if config.is_scoped:
            return make_store(config, experiment_id=experiment_id)  # ScopeError if it differs
        return _narrowed_own(make_store(config), experiment_id=experiment_id, strict=True)
    return _narrowed_own(make_store(config), experiment_id=None, strict=False)


def _narrowed_own(store: Store, *, experiment_id: str | None, strict: bool) -> Store:
    """:func:`_narrow` of a store opened here: the unscoped one is closed when a
    scoped store replaces it (its connections are not left open), or on error."""
    try:
        narrowed = _narrow(store, experiment_id=experiment_id, strict=strict)
    except BaseException:
        store.close()
        raise
    if narrowed is not store:
        store.close()
    return narrowed


def _open_store(store: Store, experiment_id: str | None) -> Store:
    if experiment_id is None or store.experiment_id == experiment_id:
        return store
    if store.is_scoped:
        raise ScopeError(
            f"the store is scoped to {store.experiment_id!r}, not {experiment_id!r}; pass the "
            "collection store (config.unscoped().connect()) to pick another experiment"
        )
    return _narrow(store, experiment_id=experiment_id, strict=False)


def _narrow(store: Store, *, experiment_id: str | None, strict: bool) -> Store:
    """Scope an unscoped store to one experiment when that is what the user means.

    With ``experiment_id`` the collection must hold it (``strict``: else
    NotFoundError).  Without it, a collection with exactly one experiment is
    narrowed to it.  If the scoped store would be empty (the path is the
    experiment folder itself), the unscoped store is kept: it reads the
    folder's own runs.
    """
    if store.is_scoped:
        return store
    experiments = store.list_experiments()
    if experiment_id is None:
        if len(experiments) != 1:
            return store
        experiment_id = experiments[0]
    elif experiment_id not in experiments and not strict:
        return store
    from metalab.store import narrow_to_experiment

    try:
        return narrow_to_experiment(store, experiment_id)
    except (ScopeError, NotImplementedError):  # pragma: no cover - odd backends
        return store


def _mark_lost(documents: Any) -> Any:
    """Show ``running`` documents whose heartbeat stopped as ``lost`` (see effective_status)."""
    from datetime import UTC, datetime

    from metalab.query import effective_status, lost_after_seconds

    now, limit = datetime.now(UTC), lost_after_seconds()
    for doc in documents:
        if isinstance(doc, dict) and doc.get("status") == "running":
            doc["status"] = effective_status(doc, now, limit)
        yield doc
