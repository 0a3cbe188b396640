"""Curation of a PostgresStore: annotations and deletion, files first, then the index.

A mixin of :class:`~metalab.store._postgres._store.PostgresStore`.  Each
change is made to the files by the store's FileStore (see
:mod:`metalab.store._file_curate`: sidecar annotation files, crash-safe
deletion) and reaches the index before the call returns:

1. the experiment is marked ``behind`` in the journal, naming the runs
   (reads use the files until the index has the change, so a query right
   after never sees the old tags);
2. the files are changed (each change logs ``r {run_id}`` in the change feed);
3. the experiment is marked again and caught up (:meth:`PostgresStore.catch_up`
   reads the runs again from the files, annotations applied).

A process killed between 2 and 3 leaves the mark: the next catch-up (any
process, or ``metalab store reconcile``) sends the change.  An index that
cannot be reached keeps the mark (a warning is logged); the files hold the
change and queries read them meanwhile.  An experiment deleted from the files
has its rows deleted from the index in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from metalab._errors import IndexUnavailableError, ScopeError
from metalab.model import RunRecord
from metalab.store._annotations import Annotations, check_change, no_such_runs

if TYPE_CHECKING:
    from metalab.store._file import FileStore
    from metalab.store._index._postgres import PostgresIndex
    from metalab.store._postgres._journal import Journal

__all__ = ["PostgresCuration", "drop_experiment_rows"]

#: the index tables holding rows of an experiment
_EXPERIMENT_TABLES = ("runs", "run_records", "derived", "experiment_manifests",
                      "field_catalog", "run_table_cache", "experiments")


def drop_experiment_rows(index: PostgresIndex, experiment_id: str) -> None:
    """Delete every row of ``experiment_id`` from the index, in one transaction.

    Raises:
        IndexUnavailableError: the index cannot be reached.
    """
    with index.connection() as conn, conn.transaction():
        for table in _EXPERIMENT_TABLES:
            conn.execute(index._q(f"DELETE FROM {{s}}.{table} WHERE experiment_id = %s"),
                         (experiment_id,))


class PostgresCuration:
    """Annotations and deletion of a PostgresStore (see the module docstring)."""

    supports_annotations: ClassVar[bool] = True

    if TYPE_CHECKING:  # provided by PostgresStore
        _files: FileStore
        _journal: Journal

        @property
        def experiment_id(self) -> str | None: ...
        @property
        def index(self) -> PostgresIndex: ...
        def _replay_files(self, experiment_id: str) -> FileStore: ...
        def _files_of(self, experiment_id: str) -> FileStore: ...
        def _experiment_of_run(self, run_id: str) -> str | None: ...
        def _warn(self, what: str, exc: Exception) -> None: ...
        def flush(self, timeout: float | None = None) -> bool: ...
        def catch_up(self) -> int: ...

    def _caught_up(self) -> None:
        """Send the marked changes now; an unreachable index keeps its marks."""
        self.flush()
        try:
            self.catch_up()
        except IndexUnavailableError as exc:
            self._warn("the index cannot be reached; queries read the files", exc)

    def _by_experiment(self, run_ids: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        missing = []
        for rid in dict.fromkeys(run_ids):
            eid = self._experiment_of_run(rid)
            if eid is None or not self._replay_files(eid).run_exists(rid):
                missing.append(rid)
            else:
                groups.setdefault(eid, []).append(rid)
        if missing:
            raise no_such_runs(missing, "the store")
        return groups

    def annotate_runs(self, run_ids: Iterable[str], *, add_tags: Iterable[str] = (),
                      remove_tags: Iterable[str] = (), note: Any = ...) -> list[str]:
        """See :meth:`Store.annotate_runs`; in the index before it returns."""
        add, remove, note = check_change(add_tags, remove_tags, note)
        written: list[str] = []
        for eid, ids in self._by_experiment(run_ids).items():
            self._journal.mark_behind(eid, ids)
            changed = self._replay_files(eid).annotate_runs(
                ids, add_tags=add, remove_tags=remove, note=note)
            written += changed
            if changed:
                self._journal.mark_behind(eid, changed)
        self._caught_up()
        return written

    def _experiment(self, experiment_id: str | None) -> str:
        eid = experiment_id if experiment_id is not None else self.experiment_id
        if eid is None:
            raise ScopeError("name the experiment: this store holds a collection of them")
        return eid

    def annotate_experiment(self, experiment_id: str | None = None, *,
                            add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (),
                            note: Any = ...) -> bool:
        """See :meth:`Store.annotate_experiment`; in the index before it returns."""
        add, remove, note = check_change(add_tags, remove_tags, note)
        eid = self._experiment(experiment_id)
        files = self._files_of(eid)
        self._journal.mark_behind(eid)
        changed = files.annotate_experiment(eid, add_tags=add, remove_tags=remove, note=note)
        if changed:
            self._journal.mark_behind(eid)
        self._caught_up()
        return changed

    def get_annotations(self, run_id: str) -> Annotations:
        """See :meth:`Store.get_annotations`."""
        return self._files.get_annotations(run_id)

    def executed_record(self, run_id: str) -> RunRecord | None:
        """See :meth:`Store.executed_record`."""
        return self._files.executed_record(run_id)

    def get_experiment_annotations(self, experiment_id: str | None = None) -> Annotations:
        """See :meth:`Store.get_experiment_annotations`."""
        eid = self._experiment(experiment_id)
        return self._files_of(eid).get_experiment_annotations(eid)

    def delete_experiment(self, experiment_id: str | None = None) -> bool:
        """See :meth:`Store.delete_experiment`; its rows leave the index before it returns."""
        eid = self._experiment(experiment_id)
        files = self._files_of(eid)
        self._journal.mark_behind(eid)  # a kill after the files went: the catch-up re-syncs
        files.delete_experiment(eid)
        self.flush()  # (nothing of the experiment queued in this process may follow)
        with self._journal.lock(eid):
            claim = self._journal.claim_behind(eid)
            try:
                drop_experiment_rows(self.index, eid)
            except IndexUnavailableError as exc:
                if claim is not None:
                    self._journal.release(claim)  # the mark stays for a later catch-up
                self._warn("the index cannot be reached; queries read the files", exc)
                return True
            if claim is not None:
                self._journal.done(claim)
        return True
