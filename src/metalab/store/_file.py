"""FileStore: the files-first store (the source of truth).

Folder of one experiment (``{root}/{safe_experiment_id(id)}/`` when scoped,
``{root}/`` when not)::

    runs/{run_id}.json               run record (RunRecord.to_dict)
    derived/{run_id}.json            derived metrics
    artifacts/{run_id}/{file}        artifact bytes
    artifacts/{run_id}/_manifest.json  list of artifact descriptors
    logs/{run_id}_{name}.log         logs (appended as they stream)
    results/{run_id}/{name}.json     structured data payloads
    results/{run_id}/_live_series.jsonl  steps of a running run (``_series``)
    experiments/{safe_id}_{ts}.json  experiment manifests (one per submission)
    _meta.json                       format, layout version, real experiment id
    annotations/{run_id}.json        a user's tags and note of a run, and
    _annotations.json                of the experiment (see ``_annotations``)
    .changes/{host}-{boot}.log       hint for the query catalog: which runs/derived
                                     files changed (see ``_changes``; not data)

Connecting reads at most ``_meta.json``; nothing is created until the first
write.  Every file is written with :func:`~metalab._internal._atomic.atomic_write_bytes`
(temp file, fsync, rename; no fsync for ``running`` records and heartbeats, see
:meth:`FileStore.put_run_record`), so readers never see partial files and need
no locks.  Artifact URIs are relative to the experiment folder, so a store can be
copied or rsynced elsewhere and still be read.

Thread/process safety: all methods may be called concurrently from several
threads and processes (also on NFS).  Two writers of the same file: the last
rename wins.  The artifact manifest of one run is read-modified-written
under ``artifacts/{run_id}/_manifest.lock`` (an ``O_EXCL`` lock file, NFS-safe),
so concurrent ``put_artifact`` calls for the same run from several threads or
processes all end up in the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from metalab._errors import (
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    InvalidNameError,
    NotFoundError,
    ScopeError,
    StoreError,
    ValidationError,
)
from metalab._internal._atomic import (
    atomic_copy_file,
    atomic_write_bytes,
    create_exclusive,
    open_in_folder,
    write_all,
)
from metalab._internal._confined import open_regular_inside, read_regular_inside, regular_file_names
from metalab._internal._json import (
    JSONDecodeError,
    dumps,
    dumps_pretty,
    encode_list,
    encode_values,
    has_non_finite,
    loads,
)
from metalab._internal._lockfile import FileLock, hold
from metalab._internal._names import check_name, safe_experiment_id
from metalab._internal._time import compact_ts, to_iso, utcnow
from metalab.model import ArtifactDescriptor, RunRecord
from metalab.store._base import ErrorCallback, Store, warn_corrupt
from metalab.store._base import log as _log
from metalab.store._changes import note_change
from metalab.store._config import StoreConfig, parse_bool
from metalab.store._file_claims import FileClaims
from metalab.store._file_curate import FileCuration
from metalab.store._file_index import FileIndexReads
from metalab.store._group_commit import FileGroupCommit
from metalab.store._series import LIVE_SERIES_FILE
from metalab.store.locator import LocatorInfo

if TYPE_CHECKING:
    from metalab.store._index._interface import Index

__all__ = ["LAYOUT_FOLDERS", "META_FILE", "FileStore", "FileStoreConfig"]

META_FILE = "_meta.json"
MANIFEST_FILE = "_manifest.json"
#: lock file serialising manifest updates of one run across processes (NFS-safe O_EXCL)
MANIFEST_LOCK_FILE = "_manifest.lock"
MANIFEST_LOCK_WAIT_S = 30.0
MANIFEST_LOCK_STALE_S = 60.0
META_FORMAT = "metalab-filestore"
LAYOUT_VERSION = 1
#: folders of the layout (never taken for experiment folders of a collection)
LAYOUT_FOLDERS = frozenset({"runs", "derived", "artifacts", "logs", "results", "experiments",
                            "annotations"})
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_CHUNK = 1 << 16
#: bytes per read when hashing an artifact copied from a file
_HASH_CHUNK = 1 << 20
_MANIFEST_NAME_RE = re.compile(r"^(?P<safe>.+)_(?P<ts>\d{8}T\d{12}Z)\.json$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileStoreConfig(StoreConfig):
    """Where a :class:`FileStore` lives.

    Attributes:
        root: the collection folder (made absolute, ``~`` expanded).
        experiment_id: the experiment this config is scoped to; its files go
            to ``{root}/{safe_experiment_id(experiment_id)}/``.
        read_only: the store refuses every write
            (:class:`~metalab.ReadOnlyStoreError`) and writes
            nothing when it reads (queries scan the files rather than
            refresh the catalog; a missing ``_meta.json`` is not rebuilt).
            Locator: ``?read_only=true``.

    Raises:
        ConfigError: ``root`` is empty, or ``read_only`` is not a bool.
        InvalidNameError: ``experiment_id`` is not a usable id.
    """

    scheme: ClassVar[str] = "file"

    root: str
    experiment_id: str | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        root = os.fspath(self.root) if isinstance(self.root, os.PathLike) else self.root
        if not isinstance(root, str) or not root.strip():
            raise ConfigError(
                f"FileStoreConfig.root must be a folder path such as './experiments', got {root!r}"
            )
        object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(root)))
        if not isinstance(self.read_only, bool):
            raise ConfigError(
                f"FileStoreConfig.read_only must be True or False, got {self.read_only!r}"
            )
        if self.experiment_id is not None:
            safe_experiment_id(self.experiment_id)

    def connect(self) -> FileStore:
        """Open the store (reads ``_meta.json`` if present; creates nothing)."""
        return FileStore(self)

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> FileStoreConfig:
        """Build from a ``file`` locator; ``?experiment_id=`` or the keyword scope it,
        ``?read_only=true`` or the keyword ``read_only=True`` open it read-only.

        Raises:
            ConfigError: unknown query parameters or keywords, two different
                experiment ids, or a ``read_only`` that is not a boolean.
        """
        query = dict(info.query)
        q_id = query.pop("experiment_id", None)
        k_id = kwargs.pop("experiment_id", None)
        q_ro = query.pop("read_only", None)
        read_only = kwargs.pop("read_only", None)
        if read_only is None:
            read_only = parse_bool("read_only", q_ro) if q_ro is not None else False
        unknown = sorted(set(query) | set(kwargs))
        if unknown:
            raise ConfigError(
                f"the file store does not understand option(s) {unknown}; "
                "the options are 'experiment_id' and 'read_only'"
            )
        if q_id is not None and k_id is not None and q_id != k_id:
            raise ConfigError(
                f"the locator says experiment_id={q_id!r} but the keyword says {k_id!r}; "
                "give only one of them"
            )
        return cls(root=info.path, experiment_id=k_id if k_id is not None else q_id,
                   read_only=read_only)

    def to_dict(self, *, include_password: bool = True) -> dict[str, Any]:
        """``{"root", "experiment_id", "_type"}`` (a folder holds no secret to leave out);
        a read-only config also has ``"read_only": True`` before ``_type``."""
        d: dict[str, Any] = {"root": self.root, "experiment_id": self.experiment_id}
        if self.read_only:
            d["read_only"] = True
        d["_type"] = self.scheme
        return d


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _read_json(path: str, what: str, root: str | None = None) -> Any:
    """JSON in ``path`` (a regular file in ``root`` if given); None if missing or CorruptRecordError."""
    try:
        data = _read_bytes(path) if root is None else read_regular_inside(path, root)
    except FileNotFoundError:
        return None
    try:
        return loads(data)
    except JSONDecodeError as exc:
        raise CorruptRecordError(
            f"{what} {path} is not valid JSON ({exc}); restore it from a backup or delete it",
            path,
        ) from exc


def _artifact_file_name(name: str, format: str) -> str:
    if not format or name.endswith("." + format):
        return name
    return f"{name}.{format}"


class FileStore(FileClaims, FileCuration, FileIndexReads, FileGroupCommit, Store):
    """A store of plain files under one folder.  See the module docstring; claims
    and heartbeats are in :mod:`metalab.store._file_claims`, annotations and
    deletion in :mod:`metalab.store._file_curate`, reads answered by the catalog
    in :mod:`metalab.store._file_index`, the group commit of final records in
    :mod:`metalab.store._group_commit`.

    Raises (on connect):
        ExperimentMismatchError: the experiment folder belongs to another
            experiment id that maps to the same folder name.
        CorruptRecordError: the folder's ``_meta.json`` cannot be parsed.
    """

    supports_working_directory: ClassVar[bool] = True
    supports_log_path: ClassVar[bool] = True
    supports_live_series: ClassVar[bool] = True
    #: queries use the folder's catalog (``.catalog/``, see ``store._index._catalog``),
    #: which :meth:`rebuild_index` rebuilds
    supports_index: ClassVar[bool] = True
    supports_aggregate: ClassVar[bool] = True
    #: loads of chosen columns are answered by the catalog (see ``_file_index``)
    supports_run_table: ClassVar[bool] = True
    index_unit: ClassVar[str] = "files read"
    backend_write_methods: ClassVar[frozenset[str]] = frozenset(
        {"put_run_data", "stage_run_record", "commit_staged", "discard_staged"}
    )

    def __init__(
        self, config: FileStoreConfig | str | os.PathLike[str], experiment_id: str | None = None
    ) -> None:
        if not isinstance(config, FileStoreConfig):
            config = FileStoreConfig(root=os.fspath(config), experiment_id=experiment_id)
        elif experiment_id is not None:
            config = config.scoped(experiment_id)  # type: ignore[assignment]
        self._config = config
        eid = config.experiment_id
        self._dir = os.path.join(config.root, safe_experiment_id(eid)) if eid else config.root
        self._lock = threading.Lock()
        self._meta_ready = False
        # unscoped stores: run id -> experiment folder it was found in
        self._run_folders: dict[str, str] = {}
        # folders without _meta.json: runs/ mtime -> (experiment ids of the records, records)
        self._record_ids_seen: dict[str, tuple[int, frozenset[str], int]] = {}
        self._index: Index | None = None  # see _query_index
        self._check_meta()

    # ------------------------------------------------------------ identity
    @property
    def config(self) -> FileStoreConfig:
        return self._config

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileStore):
            return NotImplemented
        return type(self) is type(other) and self._config == other._config

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._config))

    def __repr__(self) -> str:
        ro = ", read_only=True" if self._config.read_only else ""
        return f"FileStore(root={self._config.root!r}, experiment_id={self.experiment_id!r}{ro})"

    @property
    def read_only(self) -> bool:
        """``config.read_only``: writes are refused (see :class:`Store`)."""
        return self._config.read_only

    def get_working_directory(self) -> str:
        return self._dir

    @property
    def root(self) -> pathlib.Path:
        """The folder this store's files are in: ``{config.root}/{safe id}`` when scoped,
        else ``config.root`` (the original metalab's ``FileStore.root``)."""
        return pathlib.Path(self._dir)

    # ------------------------------------------------------------ meta file
    def _check_meta(self) -> dict[str, Any] | None:
        meta = _read_json(os.path.join(self._dir, META_FILE), "store metadata file")
        if meta is not None and not isinstance(meta, dict):
            raise CorruptRecordError(
                f"store metadata file {os.path.join(self._dir, META_FILE)} is not a JSON object",
                os.path.join(self._dir, META_FILE),
            )
        if meta is not None and self.experiment_id is not None:
            other = meta.get("experiment_id")
            if other is not None and other != self.experiment_id:
                raise ExperimentMismatchError(
                    f"folder {self._dir} holds experiment {other!r}, not {self.experiment_id!r} "
                    f"(both ids map to the folder name {os.path.basename(self._dir)!r}); rename "
                    "one of the experiments or use another store root"
                )
        return meta

    def _ensure_meta(self) -> None:
        """Before the first write: create the folder and ``_meta.json``, or verify it."""
        if self._meta_ready:
            return
        if self._check_meta() is None:
            os.makedirs(self._dir, exist_ok=True)
            meta = {
                "format": META_FORMAT,
                "layout_version": LAYOUT_VERSION,
                "experiment_id": self.experiment_id,
                "created_at": to_iso(utcnow()),
            }
            if not create_exclusive(os.path.join(self._dir, META_FILE), dumps_pretty(meta)):
                self._check_meta()  # someone else created it meanwhile
        self._meta_ready = True

    # ------------------------------------------------------------ folders
    def _known_folder(self, run_id: str) -> str | None:
        """Our folder when scoped, else where ``run_id`` was found before or the
        collection root if it holds the run (an older layout); None: look further."""
        if self.experiment_id is not None:
            return self._dir
        found = self._run_folders.get(run_id)
        if found is not None:
            return found
        if os.path.exists(os.path.join(self._dir, "runs", f"{run_id}.json")):
            return self._dir
        return None

    def _folder(self, run_id: str) -> str:
        """The experiment folder holding ``run_id`` (always ours when scoped)."""
        known = self._known_folder(run_id)
        if known is not None:
            return known
        for folder, _eid in self._child_experiments():
            if os.path.exists(os.path.join(folder, "runs", f"{run_id}.json")):
                self._run_folders[run_id] = folder
                return folder
        return self._dir

    def _record_folder(self, record: RunRecord) -> str:
        """Where ``record`` is written: where it already is, else its experiment's folder.

        A collection (unscoped) store writes a new run into the folder of the
        run's experiment (creating its ``_meta.json``, with the same
        different-id-same-folder check as a scoped store), so the run is
        found by ``list_experiments``, ``for_experiment`` and ``export_store``.
        """
        known = self._known_folder(record.run_id)
        if known is not None:
            return known
        child = FileStore(self._config.root, record.experiment_id)
        child._ensure_meta()
        self._run_folders[record.run_id] = child._dir
        return child._dir

    def _child_experiments(self) -> list[tuple[str, str]]:
        """(folder, real experiment id) of the experiment folders under the root.

        A folder is an experiment folder when its ``_meta.json`` names the
        experiment or, without that file, when its run records name one (see
        :meth:`_recover_meta`).  A meta file that cannot be parsed is
        reported (``warn_corrupt``) and its folder left out.
        """
        out: list[tuple[str, str]] = []
        try:
            entries = sorted(os.scandir(self._dir), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return out
        for entry in entries:
            if entry.name in LAYOUT_FOLDERS or entry.name.startswith("."):
                continue
            if not entry.is_dir():
                continue
            try:
                meta = _read_json(os.path.join(entry.path, META_FILE), "store metadata file")
            except CorruptRecordError as exc:
                warn_corrupt(exc)
                continue
            if meta is None:
                recovered = self._recover_meta(entry.path)
                if recovered is not None:
                    out.append((entry.path, recovered))
            elif isinstance(meta, dict) and isinstance(meta.get("experiment_id"), str):
                out.append((entry.path, meta["experiment_id"]))
        return out

    def _record_ids(self, folder: str) -> tuple[frozenset[str], int, bool]:
        """(experiment ids named by the run records of ``folder``, number of
        records, whether they were read now).

        Remembered per folder until ``runs/`` changes (its mtime), so a folder
        that stays without a meta file is read once, not at every look.
        Unreadable records are left to the readers of the runs to report.
        """
        try:
            mtime = os.stat(os.path.join(folder, "runs")).st_mtime_ns
        except OSError:
            return frozenset(), 0, True
        seen = self._record_ids_seen.get(folder)
        if seen is not None and seen[0] == mtime:
            return seen[1], seen[2], False
        ids: set[str] = set()
        count = 0
        for doc in self._iter_folder(folder, lambda exc: None):
            eid = doc.get("experiment_id")
            if isinstance(eid, str) and eid:
                ids.add(eid)
                count += 1
        self._record_ids_seen[folder] = (mtime, frozenset(ids), count)
        return frozenset(ids), count, True

    def _recover_meta(self, folder: str) -> str | None:
        """The experiment of a folder that has no ``_meta.json``, from its run records.

        When the records all name one experiment, its meta file is rebuilt
        (created exclusively: if a writer creates it at the same moment, that
        file is kept and read) and a warning names the folder; if it cannot
        be written (a read-only folder), the folder is still read as that
        experiment and a warning says so.  Records naming several
        experiments: None (the folder is left out) with a warning naming the
        folder and the ids.  No records: None, silently (not an experiment
        folder, or one holding no runs).  A store object warns once per
        state of ``runs/``, not at every look.  A read-only store reads the
        folder as that experiment without writing the file.
        """
        ids, count, fresh = self._record_ids(folder)
        if len(ids) > 1:
            if fresh:
                _log.warning(
                    "folder %s has no %s and its run records name several experiments (%s); "
                    "it is left out. Restore its %s from a backup, or move the records of "
                    "each experiment into a folder of its own",
                    folder, META_FILE, ", ".join(map(repr, sorted(ids))), META_FILE,
                )
            return None
        if not ids:
            return None
        (eid,) = ids
        if not fresh:  # could not be rebuilt (reported then); the records still say eid
            return eid
        if self.read_only:  # read as that experiment; writing the file is a write
            _log.info("experiment folder %s has no %s; read as experiment %r (its run "
                      "records say so); not rebuilt: the store is read-only",
                      folder, META_FILE, eid)
            return eid
        path = os.path.join(folder, META_FILE)
        meta = {
            "format": META_FORMAT,
            "layout_version": LAYOUT_VERSION,
            "experiment_id": eid,
            "created_at": to_iso(utcnow()),
            "rebuilt_from_run_records": count,
        }
        try:
            created = create_exclusive(path, dumps_pretty(meta))
        except OSError as exc:
            _log.warning(
                "experiment folder %s has no %s; its %d run record(s) name experiment %r, so it "
                "is read as that experiment, but the file could not be rebuilt (%s). Make the "
                "folder writable (a later listing rebuilds it) or restore the file",
                folder, META_FILE, count, eid, exc,
            )
            return eid
        self._record_ids_seen.pop(folder, None)
        if not created:  # written meanwhile by a store of this folder: it decides
            try:
                other = _read_json(path, "store metadata file")
            except CorruptRecordError as exc:
                warn_corrupt(exc)
                return None
            found = other.get("experiment_id") if isinstance(other, dict) else None
            return found if isinstance(found, str) else None
        _log.warning(
            "experiment folder %s had no %s; rebuilt it from its %d run record(s), which all "
            "name experiment %r", folder, META_FILE, count, eid,
        )
        return eid

    def _write(self, path: str, data: bytes, *, durable: bool = True) -> None:
        self._ensure_meta()
        atomic_write_bytes(path, data, durable=durable)

    @staticmethod
    def _ensure_dir(folder: str) -> None:
        """Create ``folder`` if missing (one ``stat`` when it exists, as it nearly always does)."""
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)

    # ------------------------------------------------------------ run records
    def put_run_record(self, record: RunRecord, *, durable: bool = True) -> None:
        """Write ``runs/{run_id}.json`` atomically (see :meth:`Store.put_run_record`).

        ``durable=True``: the temp file is fsynced before it is renamed into
        place, so the name never points to unwritten bytes.  The folder is
        not fsynced: the rename reaches the disk with the filesystem's next
        journal commit (ext4: any later fsync on the filesystem, at the
        latest after its commit interval, 5 s by default), so a power loss
        right after a write may bring back the record it replaced (a
        ``running`` record: the run is then executed again), never a damaged
        one.  ``durable=False``: no fsync; after a power loss the file may be
        missing, older, or (on filesystems that delay allocation) empty,
        which readers report as a corrupt record and the next launch
        overwrites.  A process killed with ``kill -9`` loses neither.
        """
        self.put_run_data(record, dumps(record.to_dict()), durable=durable)

    def put_run_data(self, record: RunRecord, data: bytes, *, durable: bool = True) -> None:
        """Write ``data``, which must be ``dumps(record.to_dict())``, as the record
        file of ``record`` (as :meth:`put_run_record`, ``durable`` included).

        For a store that serialises the record once and hands the same bytes
        to an index (PostgresStore).  Raises what :meth:`put_run_record` raises.
        """
        folder, path = self._record_target(record)
        self._write(path, data, durable=durable)
        note_change(folder, "r", record.run_id)  # after the rename (see _changes)

    def _record_target(self, record: RunRecord) -> tuple[str, str]:
        """(experiment folder, record file) of ``record``; ScopeError / InvalidNameError."""
        run_id = check_name(record.run_id, "run id")
        if self.experiment_id is not None and record.experiment_id != self.experiment_id:
            raise ScopeError(
                f"run {run_id} belongs to experiment {record.experiment_id!r} but this store is "
                f"scoped to {self.experiment_id!r}; write it through a store of its experiment"
            )
        folder = self._record_folder(record)
        return folder, os.path.join(folder, "runs", f"{run_id}.json")

    def get_run_record(self, run_id: str) -> RunRecord | None:
        check_name(run_id, "run id")
        path = os.path.join(self._folder(run_id), "runs", f"{run_id}.json")
        doc = _read_json(path, "run record")
        if doc is None:
            return None
        return RunRecord.from_dict(self._annotated(os.path.dirname(os.path.dirname(path)), doc),
                                   source=path)

    def query_runs(
        self,
        experiment_id: str | None = None,
        where: Any = None,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """See :meth:`Store.query_runs`; answered from the experiment folder's catalog.

        The catalog (``.catalog/`` in the folder) is refreshed first from the
        files that changed; if it cannot be used the files are scanned (same
        answers).  Collections spanning several experiments are scanned.
        """
        from metalab.query._parser import as_query
        from metalab.store._index._filestore import scan_runs

        query = as_query(where, columns, order_by, limit)
        rows = self._query_index.select(query, experiment_id)
        return rows if rows is not None else scan_runs(self, experiment_id, query)

    @property
    def _query_index(self) -> Index:
        """The store's index (the catalogs of its folders), made on first use: the
        SQLite catalog is imported only by stores that query.  Two threads may
        both make one; it keeps no state of its own, so either serves."""
        if self._index is None:
            from metalab.store._index._filestore import CatalogIndex

            self._index = CatalogIndex(self)
        return self._index

    def rebuild_index(self, progress: Any = None) -> int:
        """Rebuild the query catalog of each experiment folder from the files.

        See :meth:`Store.rebuild_index`.  Returns the number of files read
        (run records and derived metrics).

        Raises:
            ReadOnlyStoreError: the store is read-only.
            StoreError: a catalog cannot be written (queries then scan).
        """
        return self._query_index.rebuild(progress)

    def reindex_catalog(self, progress: Any = None) -> int:
        """The former name of :meth:`rebuild_index` (kept for existing code)."""
        return self.rebuild_index(progress)

    def run_exists(self, run_id: str) -> bool:
        check_name(run_id, "run id")
        return os.path.exists(os.path.join(self._folder(run_id), "runs", f"{run_id}.json"))

    def iter_run_documents(
        self, experiment_id: str | None = None, *, on_error: ErrorCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        report = on_error or warn_corrupt
        if self.experiment_id is not None:
            if experiment_id is None or experiment_id == self.experiment_id:
                yield from self._iter_folder(self._dir, report)
            return
        for doc in self._iter_folder(self._dir, report):
            if experiment_id is None or doc.get("experiment_id") == experiment_id:
                yield doc
        for folder, eid in self._child_experiments():
            if experiment_id is not None and eid != experiment_id:
                continue
            remember = self._run_folders
            for doc in self._iter_folder(folder, report):
                rid = doc.get("run_id")
                if isinstance(rid, str):
                    remember[rid] = folder
                yield doc

    @classmethod
    def _iter_folder(cls, folder: str, report: ErrorCallback) -> Iterator[dict[str, Any]]:
        runs = os.path.join(folder, "runs")
        annotated = cls._folder_annotations(folder, report).apply
        try:
            it = os.scandir(runs)
        except (FileNotFoundError, NotADirectoryError):
            return
        with it:
            for entry in it:
                name = entry.name
                if name[0] == "." or not name.endswith(".json"):
                    continue  # temp files (".tmp-*") and foreign files
                path = entry.path
                try:
                    fd = os.open(path, _O_READ)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                try:
                    # one read() for a typical record; a short read of a regular file is EOF
                    data = os.read(fd, _CHUNK)
                    if len(data) == _CHUNK:
                        parts = [data]
                        while chunk := os.read(fd, _CHUNK):
                            parts.append(chunk)
                        data = b"".join(parts)
                finally:
                    os.close(fd)
                try:
                    doc = loads(data)
                except JSONDecodeError as exc:
                    report(CorruptRecordError(
                        f"run record {path} is not valid JSON ({exc}); it was skipped. "
                        "Delete it to rerun the run, or restore it from a backup",
                        path,
                    ))
                    continue
                if type(doc) is not dict:
                    report(CorruptRecordError(
                        f"run record {path} is not a JSON object; it was skipped", path
                    ))
                    continue
                rid, eid = doc.get("run_id"), doc.get("experiment_id")
                if type(rid) is not str or not rid or type(eid) is not str or not eid:
                    # (no run without its ids: never a blank run in a listing or an index)
                    report(CorruptRecordError(
                        f"run record {path} lacks a valid run_id or experiment_id; it was "
                        "skipped", path
                    ))
                    continue
                yield annotated(doc)

    # ------------------------------------------------------------ artifacts
    def _manifest_path(self, folder: str, run_id: str) -> str:
        return os.path.join(folder, "artifacts", run_id, MANIFEST_FILE)

    @contextlib.contextmanager
    def _manifest_lock(self, folder: str, run_id: str) -> Iterator[None]:
        """Serialise read-modify-writes of one run's artifact manifest across processes."""
        art_dir = os.path.join(folder, "artifacts", run_id)
        os.makedirs(art_dir, exist_ok=True)

        def busy(lock: FileLock) -> StoreError:
            return StoreError(
                f"the artifact manifest of run {run_id} stayed locked for {MANIFEST_LOCK_WAIT_S:.0f} s "
                f"by {lock.holder_text()} ({lock.path}), which is writing artifacts of this run. "
                f"Retry later, or delete that lock file if that process no longer runs"
            )

        with hold(os.path.join(art_dir, MANIFEST_LOCK_FILE), wait=MANIFEST_LOCK_WAIT_S,
                  stale=MANIFEST_LOCK_STALE_S, busy=busy):
            yield

    def _read_manifest(self, folder: str, run_id: str) -> list[dict[str, Any]]:
        path = self._manifest_path(folder, run_id)
        entries = _read_json(path, "artifact manifest")
        if entries is None:
            return []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise CorruptRecordError(f"artifact manifest {path} is not a list of objects", path)
        return entries

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
        check_name(run_id, "run id")
        check_name(name, "artifact name")
        if name.startswith("_"):
            raise InvalidNameError(
                f"artifact name {name!r} starts with '_', which is reserved for metalab's own "
                "files; drop the leading underscore"
            )
        fmt = (format or "").lstrip(".")
        if fmt:
            check_name(fmt, "artifact format")
        file_name = check_name(_artifact_file_name(name, fmt), "artifact file name")
        check_name(name, "artifact name", file_name=file_name)  # (its length in bytes)
        if not isinstance(source, bytes | bytearray | memoryview | os.PathLike):
            raise ValidationError(
                f"artifact {name!r}: source must be bytes or a path, got {type(source).__name__}"
            )
        folder = self._folder(run_id)
        uri = f"artifacts/{run_id}/{file_name}"
        target = os.path.join(folder, "artifacts", run_id, file_name)
        self._ensure_meta()
        with self._lock, self._manifest_lock(folder, run_id):
            entries = self._read_manifest(folder, run_id)
            for e in entries:
                if e.get("uri") == uri and e.get("name") != name:
                    raise InvalidNameError(
                        f"artifact {name!r} would be stored as {file_name!r}, which already holds "
                        f"artifact {e.get('name')!r} of run {run_id}; choose another name"
                    )
            if isinstance(source, os.PathLike):
                size = atomic_copy_file(source, target)
                digest = hashlib.sha256()
                with open(target, "rb") as fh:
                    while chunk := fh.read(_HASH_CHUNK):
                        digest.update(chunk)
                content_hash = digest.hexdigest()
            else:
                data = bytes(source)
                atomic_write_bytes(target, data)
                size = len(data)
                content_hash = hashlib.sha256(data).hexdigest()
            desc = ArtifactDescriptor(
                name=name,
                kind=kind,
                format=fmt,
                uri=uri,
                content_hash=content_hash,
                size_bytes=size,
                # deterministic: the same bytes under the same name of the same run
                # get the same id in every store, so transfers keep artifact ids
                artifact_id=hashlib.sha256(
                    f"{run_id}\0{name}\0{content_hash}".encode()
                ).hexdigest()[:32],
                metadata=dict(metadata or {}),
            )
            entries = [e for e in entries if e.get("name") != name]
            entries.append(desc.to_dict())
            atomic_write_bytes(self._manifest_path(folder, run_id), dumps_pretty(entries))
        return desc

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        check_name(run_id, "run id")
        return [ArtifactDescriptor.from_dict(e) for e in self._read_manifest(self._folder(run_id), run_id)]

    def open_artifact(self, run_id: str, name: str) -> BinaryIO:
        check_name(run_id, "run id")
        check_name(name, "artifact name")
        folder = self._folder(run_id)
        entries = self._read_manifest(folder, run_id)
        for e in entries:
            if e.get("name") == name:
                file_name = os.path.basename(str(e.get("uri", "")))
                try:
                    return open_regular_inside(
                        os.path.join(folder, "artifacts", run_id, file_name), folder)
                except FileNotFoundError:
                    break
        known = sorted(str(e.get("name")) for e in entries)
        raise NotFoundError(
            f"run {run_id} has no artifact {name!r} in {os.path.join(folder, 'artifacts', run_id)}"
            f"; stored artifacts: {known or 'none'}"
        )

    # ------------------------------------------------------------ logs
    def _log_file(self, folder: str, run_id: str, name: str) -> str:
        check_name(run_id, "run id")
        check_name(name, "log name", file_name=f"{run_id}_{name}.log")
        return os.path.join(folder, "logs", f"{run_id}_{name}.log")

    def append_log(self, run_id: str, name: str, text: str) -> None:
        """Append ``text`` (O_APPEND, no buffering: readers see it at once)."""
        path = self._log_file(self._folder(run_id), run_id, name)
        self._ensure_meta()
        data = text.encode("utf-8")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        fd = open_in_folder(path, flags)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    def get_log(self, run_id: str, name: str = "run") -> str | None:
        folder = self._folder(run_id)
        try:
            return read_regular_inside(self._log_file(folder, run_id, name), folder).decode(
                "utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def list_logs(self, run_id: str) -> list[str]:
        check_name(run_id, "run id")
        return self._log_names(self._folder(run_id), run_id)

    def log_path(self, run_id: str, name: str) -> str:
        """Path of log ``name`` (its folder is created so it can be opened for append)."""
        path = self._log_file(self._folder(run_id), run_id, name)
        self._ensure_meta()
        self._ensure_dir(os.path.dirname(path))
        return path

    # ------------------------------------------------------------ structured data
    def put_data(self, run_id: str, name: str, payload: dict[str, Any]) -> None:
        check_name(run_id, "run id")
        check_name(name, "data name", file_name=f"{name}.json")
        if not isinstance(payload, dict) or "data" not in payload:
            raise ValidationError(
                f"data {name!r} of run {run_id}: payload must be a dict with a 'data' key"
            )
        kind = payload.get("kind") or "data"
        if kind not in ("data", "series"):
            raise ValidationError(
                f"data {name!r} of run {run_id}: kind must be 'data' or 'series', got {kind!r}"
            )
        doc = {
            **payload,
            "kind": kind,
            "dtype": payload.get("dtype"),
            "shape": payload.get("shape"),
            "metadata": payload.get("metadata") or {},
        }
        series = doc["data"]
        if kind == "series" and isinstance(series, dict) and isinstance(series.get("value"), list):
            # (an infinite or NaN point is written as its text: "Infinity", ...; see _json)
            doc["data"] = {**series, "value": encode_list(series["value"])}
        data = dumps(doc)
        if b"null" in data and has_non_finite(doc):  # (JSON would hold null instead)
            raise ValidationError(
                f"data {name!r} of run {run_id} holds NaN or an infinity, which JSON cannot "
                "store; only the values of a series may be such floats (as the texts "
                "'NaN', 'Infinity', '-Infinity' elsewhere)"
            )
        path = os.path.join(self._folder(run_id), "results", run_id, f"{name}.json")
        self._write(path, data)

    def get_data(self, run_id: str, name: str) -> dict[str, Any] | None:
        check_name(run_id, "run id")
        check_name(name, "data name", file_name=f"{name}.json")
        folder = self._folder(run_id)
        path = os.path.join(folder, "results", run_id, f"{name}.json")
        doc = _read_json(path, "structured data file", folder)
        if doc is not None and not isinstance(doc, dict):
            raise CorruptRecordError(f"structured data file {path} is not a JSON object", path)
        return doc

    def list_data(self, run_id: str) -> list[str]:
        check_name(run_id, "run id")
        try:
            names = regular_file_names(os.path.join(self._folder(run_id), "results", run_id))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def live_series_path(self, run_id: str) -> str:
        check_name(run_id, "run id")
        return os.path.join(self._folder(run_id), "results", run_id, LIVE_SERIES_FILE)

    # ------------------------------------------------------------ derived
    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        check_name(run_id, "run id")
        if not isinstance(values, dict):
            raise ValidationError(
                f"derived metrics of run {run_id} must be a dict, got {type(values).__name__}"
            )
        folder = self._folder(run_id)
        # (an infinite or NaN value is written as its text: "Infinity", ...; see _json)
        self._write(os.path.join(folder, "derived", f"{run_id}.json"),
                    dumps(encode_values(values)))
        note_change(folder, "d", run_id)

    def get_derived(self, run_id: str) -> dict[str, Any] | None:
        check_name(run_id, "run id")
        path = os.path.join(self._folder(run_id), "derived", f"{run_id}.json")
        doc = _read_json(path, "derived metrics file")
        if doc is not None and not isinstance(doc, dict):
            raise CorruptRecordError(f"derived metrics file {path} is not a JSON object", path)
        return doc

    # ------------------------------------------------------------ manifests
    def _manifest_folder(self, experiment_id: str) -> str:
        if self.experiment_id is not None and experiment_id != self.experiment_id:
            raise ScopeError(
                f"this store is scoped to {self.experiment_id!r}, not {experiment_id!r}; use a "
                "store of that experiment (config.unscoped().for_experiment(id))"
            )
        return os.path.join(self._dir, "experiments")

    def put_experiment_manifest(
        self, experiment_id: str, manifest: dict[str, Any], timestamp: datetime | None = None
    ) -> None:
        folder = self._manifest_folder(experiment_id)
        safe = safe_experiment_id(experiment_id)
        if not isinstance(manifest, dict):
            raise ValidationError("an experiment manifest must be a dict")
        ts = timestamp or utcnow()
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        data = dumps_pretty(manifest)
        self._ensure_meta()
        os.makedirs(folder, exist_ok=True)
        while not create_exclusive(os.path.join(folder, f"{safe}_{compact_ts(ts)}.json"), data):
            ts += timedelta(microseconds=1)  # never overwrite an earlier manifest

    def list_experiment_manifests(
        self, experiment_id: str
    ) -> list[tuple[datetime, dict[str, Any]]]:
        folder = self._manifest_folder(experiment_id)
        safe = safe_experiment_id(experiment_id)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found: list[tuple[datetime, dict[str, Any]]] = []
        for file_name in names:
            m = _MANIFEST_NAME_RE.match(file_name)
            if m is None or m.group("safe") != safe:
                continue
            path = os.path.join(folder, file_name)
            doc = _read_json(path, "experiment manifest")
            if not isinstance(doc, dict):
                continue
            if doc.get("experiment_id", experiment_id) != experiment_id:
                continue  # another id with the same folder-safe name
            ts = datetime.strptime(m.group("ts"), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
            found.append((ts, doc))
        found.sort(key=lambda item: item[0])
        return found

    # ------------------------------------------------------------ collection
    def list_experiments(self) -> list[str]:
        if self.experiment_id is not None:
            has_data = os.path.exists(os.path.join(self._dir, META_FILE)) or os.path.isdir(
                os.path.join(self._dir, "runs")
            )
            return [self.experiment_id] if has_data else []
        ids = {eid for _folder, eid in self._child_experiments()}
        meta = _read_json(os.path.join(self._dir, META_FILE), "store metadata file")
        if isinstance(meta, dict) and isinstance(meta.get("experiment_id"), str):
            ids.add(meta["experiment_id"])
        else:
            # runs in the root itself (an experiment folder opened as a path, or an
            # older layout): their records name their experiments
            ids.update(self._record_ids(self._dir)[0])
        return sorted(ids)

