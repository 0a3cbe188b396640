"""``PostgresStore``: a FileStore (the source of truth) plus a PostgreSQL index.

Write path: every write goes to the FileStore first (which logs it in the
experiment's ``.changes/`` log, see ``_changes``); the call returns once the
file is written.  In ``index_mode="sync"`` the change is then queued for the
process's background flusher (see ``_flusher``), which sends it to the index
within a tenth of a second, batched with other changes; the experiment is
listed in the process's in-flight log from before the file write until the
change is settled, so a process that dies before the flush loses nothing (the
next catch-up finds its log orphaned and reads the experiment's change logs).
If the index cannot be updated (server down, circuit breaker open, any
database error) the experiment is marked ``behind`` in the catch-up journal
beside the files (see ``_journal``), and a later successful contact, or
:meth:`PostgresStore.reconcile`, reads its change logs past the stored offsets
and sends the files they name.  In ``index_mode="deferred"`` writes never
contact the database; they only mark the experiment ``behind``.

Read path: bulk reads (``iter_run_documents`` / ``list_run_records``) first
wait for this process's queued changes (a process reads its own writes), then
come from the index, one query per page of runs, unless the index is unreachable
or may be behind the files for that experiment (a ``behind`` or dirty mark, or
changes another process has not sent yet: its in-flight log names the
experiment); then they
come from the files, and a journal that is not empty gets a background
catch-up.  Single-item reads, artifacts, logs, data and manifests are read from
the files (one small file: as fast as a round trip, and always current).

Catch-up, reconcile and rebuild are the mixin of ``_catchup``; annotations
and deletion the mixin of ``_curate``.

Thread/process safety: as the FileStore.  Several processes may write and
catch up at once; catch-ups of one experiment take turns (its journal lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, ClassVar

from metalab._errors import (
    ConfigError,
    CorruptRecordError,
    IndexUnavailableError,
    ScopeError,
    StoreError,
)
from metalab._internal._json import dumps, encode_values
from metalab._internal._throttle import Throttle
from metalab.model import ArtifactDescriptor, RunRecord
from metalab.query._parser import as_query
from metalab.store._base import ErrorCallback, Store, warn_corrupt
from metalab.store._changes import log_position
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store._index._interface import Index
from metalab.store._index._pgquery import PostgresQueries
from metalab.store._index._postgres import PostgresIndex
from metalab.store._postgres._catchup import PostgresCatchUp
from metalab.store._postgres._config import PostgresStoreConfig, conninfo_params
from metalab.store._postgres._curate import PostgresCuration
from metalab.store._postgres._flusher import IndexFlusher, Op, flush_target
from metalab.store._postgres._journal import Journal

__all__ = ["PostgresStore"]

log = logging.getLogger("metalab.store.postgres")

#: runs per index page for bulk reads
PAGE_SIZE = 5000
#: seconds between two warnings about deferred index updates
WARN_INTERVAL = 30.0


class PostgresStore(PostgresCuration, PostgresCatchUp, Store):
    """FileStore + PostgreSQL query index.  See the module docstring.

    Build it with ``PostgresStoreConfig(...).connect()``, ``create_store(uri,
    file_root=...)`` or :meth:`from_filestore`.  Connecting never touches the
    database.

    Raises (on construction):
        MissingDependencyError: psycopg is not installed (raised on first
            index use instead, so file access keeps working).
    """

    supports_working_directory: ClassVar[bool] = True
    supports_log_path: ClassVar[bool] = True
    supports_live_series: ClassVar[bool] = True
    supports_index: ClassVar[bool] = True
    supports_aggregate: ClassVar[bool] = True
    index_unit: ClassVar[str] = "runs indexed"
    supports_run_table: ClassVar[bool] = True
    backend_write_methods: ClassVar[frozenset[str]] = frozenset(
        {"catch_up", "reconcile", "create_field_index"}
    )

    def __init__(self, config: PostgresStoreConfig) -> None:
        if not isinstance(config, PostgresStoreConfig):
            raise ConfigError(f"PostgresStore needs a PostgresStoreConfig, got {type(config).__name__}")
        self._config = config
        root = str(config.file_root)  # never None: checked by the config
        self._files = FileStore(FileStoreConfig(root=root, experiment_id=config.experiment_id,
                                                read_only=config.read_only))
        params = conninfo_params(config.connection_string)
        self._journal = Journal(
            root,
            config.index_key,
            {"host": params.get("host"), "port": params.get("port"),
             "dbname": params.get("dbname"), "schema": config.schema},
        )
        self._index = PostgresIndex(config)
        #: the store's index as the stores see one (queries, counts, run tables, rebuild)
        self._query_index: Index = PostgresQueries(self)
        self._lock = threading.Lock()
        self._next_catch_up = 0.0  # look at the journal on the first successful write
        self._next_catch_up_request = 0.0  # reads ask for a catch-up at most this often
        self._warning = Throttle(WARN_INTERVAL)
        self._scoped_files: dict[str, FileStore] = {}
        self._flusher: IndexFlusher | None = None
        self._touched: set[str] = set()  # experiments written since their offsets moved

    # ------------------------------------------------------------ identity
    @property
    def config(self) -> PostgresStoreConfig:
        return self._config

    @property
    def read_only(self) -> bool:
        """``config.read_only``: writes are refused, reads start no catch-up."""
        return self._config.read_only

    @property
    def file_store(self) -> FileStore:
        """The FileStore holding this store's data (the source of truth)."""
        return self._files

    @property
    def index(self) -> PostgresIndex:
        """The PostgreSQL index (SQL access; raises when unreachable).

        This process's queued index changes are sent first (bounded wait), so
        SQL through it sees this process's own writes.
        """
        self.flush()
        return self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PostgresStore):
            return NotImplemented
        return self._config == other._config

    def __hash__(self) -> int:
        return hash(("PostgresStore", self._config))

    def __repr__(self) -> str:
        return (
            f"PostgresStore(index={self._config.display_target!r}, schema={self._config.schema!r}, "
            f"file_root={self._config.file_root!r}, experiment_id={self.experiment_id!r})"
        )

    def get_working_directory(self) -> str:
        return self._files.get_working_directory()

    # claims and heartbeats live with the files (delegated, see Store.try_claim)
    supports_claims: ClassVar[bool] = True

    def try_claim(self, run_id: str, owner: str, stale_after: float) -> bool:
        return self._files.try_claim(run_id, owner, stale_after)

    def touch_heartbeat(self, run_id: str, owner: str) -> bool:
        return self._files.touch_heartbeat(run_id, owner)

    def release_claim(self, run_id: str, owner: str) -> None:
        self._files.release_claim(run_id, owner)

    def claim_holder(self, run_id: str) -> tuple[str, float] | None:
        return self._files.claim_holder(run_id)

    def close(self) -> None:
        """Send queued index changes (bounded wait), then release connections."""
        flusher = self._flusher
        if flusher is not None and flusher.pid == os.getpid():
            flusher.close(timeout=self._flush_timeout())
        self._flusher = None
        self._index.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until this process's queued index changes are sent (or journaled).

        Covers the changes of every store of this process with the same file
        root and index (not only this object's).  Returns False if
        ``timeout`` (default: a bound derived from ``connect_timeout``) passed
        first.  Reads call it themselves.
        """
        return flush_target(
            self._journal.folder, self._flush_timeout() if timeout is None else timeout
        )

    def _flush_timeout(self) -> float:
        return 2 * self._config.connect_timeout + 10.0

    # ------------------------------------------------------------ helpers
    def _files_of(self, experiment_id: str) -> FileStore:
        """A FileStore scoped to ``experiment_id`` (this one if already scoped)."""
        if self.experiment_id is not None and experiment_id != self.experiment_id:
            raise ScopeError(
                f"this store is scoped to {self.experiment_id!r}, not {experiment_id!r}"
            )
        return self._replay_files(experiment_id)

    def _replay_files(self, experiment_id: str) -> FileStore:
        """A FileStore scoped to ``experiment_id``, also outside this store's scope
        (catch-up replays every experiment's journal)."""
        if experiment_id == self.experiment_id:
            return self._files
        found = self._scoped_files.get(experiment_id)
        if found is None:
            found = FileStore(FileStoreConfig(root=self._files.config.root,
                                              experiment_id=experiment_id,
                                              read_only=self._config.read_only))
            self._scoped_files[experiment_id] = found
        return found

    def _experiment_of_run(self, run_id: str) -> str | None:
        if self.experiment_id is not None:
            return self.experiment_id
        try:
            rec = self._files.get_run_record(run_id)
        except CorruptRecordError:
            return None
        return rec.experiment_id if rec is not None else None

    def _warn(self, what: str, exc: Exception) -> None:
        if self._warning.ready():  # not one line per run
            log.warning("index update deferred (%s): %s", what, exc)

    def _get_flusher(self) -> IndexFlusher:
        flusher = self._flusher
        if flusher is None or flusher.pid != os.getpid():  # first use, or forked
            with self._lock:
                flusher = self._flusher
                if flusher is None or flusher.pid != os.getpid():
                    flusher = self._flusher = IndexFlusher(
                        self._index,
                        self._journal,
                        lambda eid: self._files_of(eid).list_experiment_manifests(eid),
                        self._after_flush,
                        catch_up=self._background_catch_up,
                        exit_timeout=self._flush_timeout(),
                        deferred=self._config.index_mode == "deferred",
                        on_close=self._advance_touched,
                        position_of=lambda eid: log_position(
                            self._replay_files(eid).get_working_directory()),
                    )
        return flusher

    @contextlib.contextmanager
    def _index_write(self, experiment_id: str) -> Iterator[list[Op]]:
        """Around a file write of ``experiment_id``: the body writes the file and
        appends its :class:`Op`, handed to the index on leaving (queued, or the
        experiment marked ``behind``).  The experiment is listed in the
        in-flight log before the body runs (see ``_journal``)."""
        flusher = self._get_flusher()
        gen = flusher.begin(experiment_id)
        ops: list[Op] = []
        try:
            yield ops
        except BaseException:
            flusher.abort(experiment_id, gen)
            raise
        with self._lock:
            self._touched.add(experiment_id)
        if ops:
            flusher.submit(ops[0], gen)
        else:
            flusher.abort(experiment_id, gen)

    # ------------------------------------------------------------ run records
    def put_run_record(self, record: RunRecord, *, durable: bool = True) -> None:
        """Write the record file (as :meth:`FileStore.put_run_record`, ``durable`` included),
        then hand the same bytes to the index (queued or journaled, see ``index_mode``)."""
        data = dumps(record.to_dict())  # once: the file and the index get the same bytes
        with self._index_write(record.experiment_id) as ops:
            self._files.put_run_data(record, data, durable=durable)
            ops.append(Op(record.experiment_id, "put_run", record.run_id,
                          text=self._files.annotated_text(record, data)))  # (tags, notes)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        return self._files.get_run_record(run_id)

    def run_exists(self, run_id: str) -> bool:
        return self._files.run_exists(run_id)

    def iter_run_documents(
        self, experiment_id: str | None = None, *, on_error: ErrorCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        """Run documents from the index (pages of :data:`PAGE_SIZE`), else the files.

        The index is used when it is reachable and the journal says it is not
        behind for the experiment; a failure part-way continues from the
        files without repeating runs already yielded.
        """
        if self.experiment_id is not None:
            if experiment_id is not None and experiment_id != self.experiment_id:
                return
            experiment_id = self.experiment_id
        yield from self._iter_docs(experiment_id, None, on_error or warn_corrupt)

    def iter_runs_with_status(
        self, status: str, experiment_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Run documents with ``status`` (filtered in SQL when the index is current)."""
        if self.experiment_id is not None:
            if experiment_id is not None and experiment_id != self.experiment_id:
                return
            experiment_id = self.experiment_id
        yield from self._iter_docs(experiment_id, str(status), warn_corrupt)

    def _index_current(self, experiment_id: str | None) -> bool:
        """True if reads of ``experiment_id`` (``None``: of all) may use the index.

        False while this process's queue cannot be sent, the server is
        unreachable, any process (a worker of this sweep included) still has
        changes of the experiment in flight, or the journal lists some; in
        the last case (``sync`` mode) a catch-up is started in the background
        so later reads find the index current.
        """
        if not (self.flush() and self._index.breaker.allow()):
            return False
        # in-flight first: an experiment leaves a log only once its changes are
        # indexed or it is marked behind
        if self._journal.in_flight(experiment_id):
            if self._journal.has_orphans():  # a writer died before sending: adopt its log
                self._request_catch_up()
            return False  # a live writer sends its changes within a fraction of a second
        if self._journal.has_backlog(experiment_id, orphans=False):
            self._request_catch_up()
            return False
        return True

    def _iter_docs(
        self, experiment_id: str | None, status: str | None, report: ErrorCallback
    ) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        if self._index_current(experiment_id):
            after: tuple[str, str] | None = None
            try:
                while True:
                    page = self._index.page_run_documents(experiment_id, after, PAGE_SIZE, status)
                    for eid, rid, doc in page:
                        seen.add(f"{eid}\x00{rid}")
                        yield doc
                    if len(page) < PAGE_SIZE:
                        return
                    after = (page[-1][0], page[-1][1])
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                self._warn("read", exc)
        for doc in self._files.iter_run_documents(experiment_id, on_error=report):
            if status is not None and doc.get("status") != status:
                continue
            if seen:
                key_eid = experiment_id if experiment_id is not None else doc.get("experiment_id")
                if f"{key_eid}\x00{doc.get('run_id')}" in seen:
                    continue
            yield doc

    def query_runs(
        self,
        experiment_id: str | None = None,
        where: Any = None,
        columns: Any = None,
        order_by: Any = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """See :meth:`Store.query_runs`: runs in SQL when the index is current, else on the files."""
        query = as_query(where, columns, order_by, limit)
        rows = self._query_index.select(query, experiment_id)
        return rows if rows is not None else self._files.query_runs(self._scope(experiment_id), query)

    def _scope(self, experiment_id: str | None) -> str | None:
        """The experiment a read of ``experiment_id`` covers (the store's, when scoped)."""
        return self.experiment_id if self.experiment_id is not None else experiment_id

    def run_table(self, experiment_id: str | None = None, query: Any = None
                  ) -> dict[str, Any] | None:
        """The runs (of ``query``, a parsed query) as columns from the index, else None.

        Used by :func:`~metalab.analysis.load_results`; see
        ``_pgquery.table_runs`` for the layout.  None: the index is unreachable
        or behind the files (read the files instead).
        """
        return self._query_index.table(experiment_id, query)

    def read_run_documents(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Record documents of many runs (``(experiment_id, run_id)`` keys) at once.

        From the index in pages of :data:`PAGE_SIZE` (one round trip each)
        when it is current for the experiments, else, and for any run the
        index lacks, from the files.  Runs found nowhere (or unreadable,
        reported as a warning) are absent from the answer.
        """
        out: dict[tuple[str, str], dict[str, Any]] = {}
        scope = self.experiment_id if self.experiment_id is not None else (
            keys[0][0] if keys and all(k[0] == keys[0][0] for k in keys) else None)
        if keys and self._index_current(scope):
            try:
                for i in range(0, len(keys), PAGE_SIZE):
                    out.update(self._index.record_documents(keys[i:i + PAGE_SIZE]))
            except (IndexUnavailableError, StoreError, ImportError) as exc:
                self._warn("read", exc)
        for eid, rid in keys:
            if (eid, rid) in out:
                continue
            try:
                rec = self._files_of(eid).get_run_record(rid)
            except (CorruptRecordError, ScopeError) as exc:
                if isinstance(exc, CorruptRecordError):
                    warn_corrupt(exc)
                continue
            if rec is not None:
                out[(eid, rid)] = rec.to_dict()
        return out

    def count_runs(self, experiment_id: str | None = None, status: str | None = None) -> int:
        """Number of runs (index when current, else files)."""
        counted = self._query_index.count(experiment_id, status)
        if counted is not None:
            return counted
        return sum(
            1 for d in self._files.iter_run_documents(self._scope(experiment_id))
            if status is None or d.get("status") == status
        )

    def delete_run(self, run_id: str) -> None:
        eid = self._experiment_of_run(run_id)
        if eid is None:
            self._files.delete_run(run_id)
            return
        with self._index_write(eid) as ops:
            self._files.delete_run(run_id)
            ops.append(Op(eid, "delete_run", run_id))

    # ------------------------------------------------------------ artifacts, logs, data
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
        return self._files.put_artifact(
            run_id, name, source, kind=kind, format=format, metadata=metadata
        )

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        return self._files.list_artifacts(run_id)

    def open_artifact(self, run_id: str, name: str) -> BinaryIO:
        return self._files.open_artifact(run_id, name)

    def append_log(self, run_id: str, name: str, text: str) -> None:
        self._files.append_log(run_id, name, text)

    def get_log(self, run_id: str, name: str = "run") -> str | None:
        return self._files.get_log(run_id, name)

    def list_logs(self, run_id: str) -> list[str]:
        return self._files.list_logs(run_id)

    def open_log(self, run_id: str, name: str = "run") -> BinaryIO | None:
        """The log file itself, opened for binary reading (``None`` if missing), as
        :meth:`FileStore.open_log`: a reader of its tail reads only the tail.

        Raises:
            InvalidNameError: the run id or log name is not a usable name.
            NotFoundError: the log is a symbolic link, a folder or outside the
                experiment folder.
        """
        return self._files.open_log(run_id, name)

    def log_path(self, run_id: str, name: str) -> str:
        return self._files.log_path(run_id, name)

    def live_series_path(self, run_id: str) -> str:
        return self._files.live_series_path(run_id)

    def put_data(self, run_id: str, name: str, payload: dict[str, Any]) -> None:
        self._files.put_data(run_id, name, payload)

    def get_data(self, run_id: str, name: str) -> dict[str, Any] | None:
        return self._files.get_data(run_id, name)

    def list_data(self, run_id: str) -> list[str]:
        return self._files.list_data(run_id)

    # ------------------------------------------------------------ derived
    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        values = encode_values(values)  # (the stored form: JSONB has no NaN / infinity)
        eid = self._experiment_of_run(run_id)
        if eid is None:
            self._files.put_derived(run_id, values)
            return
        with self._index_write(eid) as ops:
            self._files.put_derived(run_id, values)
            ops.append(Op(eid, "derived", run_id, values))

    def get_derived(self, run_id: str) -> dict[str, Any] | None:
        return self._files.get_derived(run_id)

    # ------------------------------------------------------------ manifests
    def put_experiment_manifest(
        self, experiment_id: str, manifest: dict[str, Any], timestamp: datetime | None = None
    ) -> None:
        files = self._files_of(experiment_id)
        with self._index_write(experiment_id) as ops:
            files.put_experiment_manifest(experiment_id, manifest, timestamp)
            ops.append(Op(experiment_id, "manifests"))

    def list_experiment_manifests(
        self, experiment_id: str
    ) -> list[tuple[datetime, dict[str, Any]]]:
        return self._files_of(experiment_id).list_experiment_manifests(experiment_id)

    # ------------------------------------------------------------ collection
    def list_experiments(self) -> list[str]:
        return self._files.list_experiments()

    def field_catalog(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Field names of params / metrics / derived with JSON type and exact run count.

        Raises:
            IndexUnavailableError: the index cannot be reached.
            ScopeError: no experiment given on an unscoped store.
        """
        eid = experiment_id or self.experiment_id
        if eid is None:
            raise ScopeError("field_catalog() needs an experiment id on an unscoped store")
        self.flush()
        return self._index.field_catalog(eid)

    def create_field_index(self, *fields: str) -> list[str]:
        """Index numeric ``params.*`` / ``metrics.*`` fields for fast range filters.

        A filter such as ``params.lr < 0.01 and metrics.score >= 0.9`` then
        reads only the matching rows instead of scanning every run of the
        experiment (measured in docs/performance.md).  Each index is shared
        by all experiments of the schema, created once (idempotent), and adds
        a little to every indexed write.  Returns the index names.

        Raises:
            QueryError: a field is not a params or metrics field.
            IndexUnavailableError: the index cannot be reached.
        """
        from metalab._errors import QueryError
        from metalab.query._parser import parse_field

        parsed = [parse_field(f) for f in fields]
        for text, f in zip(fields, parsed, strict=True):
            if f.ns not in ("params", "metrics") or not f.name:
                raise QueryError(
                    f"cannot index {text!r}: only params.<name> and metrics.<name> fields "
                    "can be indexed (other fields are table columns already)"
                )
        return [self._index.create_field_index(f.ns, f.name) for f in parsed]

    # ------------------------------------------------------------ moving
    @classmethod
    def from_filestore(
        cls,
        connection_string: str,
        filestore: FileStore | FileStoreConfig,
        *,
        rebuild: bool = True,
        schema: str | None = None,
        **options: Any,
    ) -> PostgresStore:
        """Put a PostgreSQL index over an existing FileStore.

        Args:
            connection_string: libpq URI or ``key=value`` string.
            filestore: the FileStore (or its config); its root becomes
                ``file_root`` and its scope the store's scope.
            rebuild: index the existing files now.
            schema, options: further :class:`PostgresStoreConfig` fields (a
                URI may also carry them as query parameters).

        Raises:
            IndexUnavailableError: ``rebuild`` and the index is unreachable.
        """
        fs_config = filestore.config if isinstance(filestore, FileStore) else filestore
        if schema is not None:
            options["schema"] = schema
        options["file_root"] = fs_config.root
        options["experiment_id"] = fs_config.experiment_id
        if "://" in connection_string:
            from metalab.store.locator import parse_locator

            config = PostgresStoreConfig.from_locator(parse_locator(connection_string), **options)
        else:
            config = PostgresStoreConfig(connection_string=connection_string, **options)
        store = cls(config)
        if rebuild:
            store.rebuild_index()
        return store

    def to_filestore(self, path: str | os.PathLike[str]) -> FileStore:
        """Copy this store's files to a new, self-contained FileStore at ``path``.

        ``path`` is the collection root of the copy (same scope as this store).
        The index state is not copied (it can be rebuilt); artifacts, logs,
        data, derived metrics and manifests are.

        Raises:
            ConfigError: ``path`` is this store's own file root.
        """
        dest = os.path.abspath(os.fspath(path))
        root = self._files.config.root
        if os.path.realpath(dest) == os.path.realpath(root):
            raise ConfigError(f"to_filestore() needs another folder than the store's own {root}")
        from metalab.store._transfer import export_store

        target = FileStoreConfig(root=dest, experiment_id=self.experiment_id)
        export_store(self, target if self.is_scoped else FileStoreConfig(root=dest))
        return FileStore(target)
