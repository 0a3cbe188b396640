"""Curation of a FileStore after the fact: annotations and crash-safe deletion
(and the opening of a log for a partial read, kept here beside them).

:class:`FileCuration` is a mixin of :class:`~metalab.store._file.FileStore`
(it uses the store's folder lookups).  Annotations are sidecar files (see
:mod:`metalab.store._annotations` for where they live and why).

Deletion is crash-safe: nothing is removed in place.  A run's files are first
renamed, one by one, into ``.trash/{run_id}.{random}/`` of its experiment
folder, **the record first** (so from that rename on, every reader finds no
run, never a run missing some of its files that reads as a success), then the
trash folder is removed.  A process killed part-way leaves either the whole
run (killed before the record's rename) or no run plus some of its files
where they were or in ``.trash/`` (hidden, ignored by every reader);
``delete_run`` again moves what is left, and trash older than
:data:`TRASH_STALE_S` is removed by later deletions.  An experiment is
deleted by renaming its whole folder into ``{root}/.trash/`` (one rename:
the experiment is there or gone) and then removing it.

Thread/process safety: as every FileStore method.  Deleting a run that is
being written (an executing run) leaves whatever that writer writes next.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from metalab._errors import CorruptRecordError, NotFoundError, ScopeError
from metalab._internal._atomic import fsync_dir
from metalab._internal._confined import open_regular_inside, regular_file_names
from metalab._internal._json import JSONDecodeError, dumps, loads
from metalab._internal._names import check_name, safe_experiment_id
from metalab.model import RunRecord
from metalab.store._annotations import (
    ANNOTATIONS_DIR,
    Annotations,
    FolderAnnotations,
    annotations_lock,
    apply_annotations,
    check_change,
    effective_tags,
    experiment_path,
    no_such_runs,
    read_annotations,
    run_path,
    update_experiment,
    update_runs,
)
from metalab.store._base import ErrorCallback, warn_corrupt
from metalab.store._changes import note_change

__all__ = ["TRASH_DIR", "TRASH_STALE_S", "FileCuration", "annotate_document"]

#: hidden folder holding what a deletion is removing
TRASH_DIR = ".trash"
#: seconds after which trash left by a killed deletion is removed by the next one
TRASH_STALE_S = 3600.0
#: the note argument meaning "leave the note as it is"
KEEP = ...


def annotate_document(folder: str, doc: dict[str, Any],
                      report: ErrorCallback | None = None) -> dict[str, Any]:
    """One run document of ``folder`` with its annotations applied (single reads).

    An unreadable annotation file is reported (default :func:`warn_corrupt`)
    and left out; never raises for it.
    """
    rid = doc.get("run_id")
    found: list[Annotations | None] = []
    paths = [experiment_path(folder)]
    if isinstance(rid, str):
        paths.append(os.path.join(folder, ANNOTATIONS_DIR, f"{rid}.json"))
    for path in paths:
        try:
            found.append(read_annotations(path))
        except CorruptRecordError as exc:
            (report or warn_corrupt)(exc)
            found.append(None)
    return apply_annotations(doc, found[0], found[1] if len(found) > 1 else None)


def _shown_without_run(folder: str, run_id: str) -> list[str]:
    """The tags ``run_id`` shows without its own annotations (record + experiment's)."""
    try:
        with open(os.path.join(folder, "runs", f"{run_id}.json"), "rb") as fh:
            doc = loads(fh.read())
    except (OSError, JSONDecodeError):
        doc = None  # (gone or unreadable: its record's tags count as none)
    base = doc.get("tags") if isinstance(doc, dict) else None
    return effective_tags(base if isinstance(base, list) else (),
                          read_annotations(experiment_path(folder)), None)


def _belongs_to_longer_run(folder: str, run_id: str, log_name: str) -> bool:
    # "{a}_{b_c}.log" may be log "b_c" of run "a" or log "c" of run "a_b"
    parts = log_name.split("_")
    for i in range(1, len(parts)):
        other = "_".join([run_id, *parts[:i]])
        if os.path.exists(os.path.join(folder, "runs", f"{other}.json")):
            return True
    return False


def _trash_name(stem: str) -> str:
    return f"{stem}.{secrets.token_hex(6)}"


def _purge_stale_trash(trash_root: str) -> None:
    """Remove trash folders older than :data:`TRASH_STALE_S` (left by killed
    deletions), then ``trash_root`` itself if it is empty."""
    cutoff = time.time() - TRASH_STALE_S
    if os.path.islink(trash_root):  # (never delete where a link leads)
        return
    try:
        it = os.scandir(trash_root)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for entry in it:
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:  # a stray file or a symbolic link (removed, never followed)
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):  # (not empty: another deletion is using it)
        os.rmdir(trash_root)


def _move_run_files(folder: str, run_id: str, log_names: Iterable[str]) -> str | None:
    """Rename the files of ``run_id`` into a new trash folder, the record first;
    returns that folder, or None when nothing was left to move."""
    items = [("runs", f"{run_id}.json"), ("derived", f"{run_id}.json"),
             ("artifacts", run_id), ("results", run_id),
             *(("logs", f"{run_id}_{name}.log") for name in log_names)]
    trash = os.path.join(folder, TRASH_DIR, _trash_name(run_id))
    made = False
    for i, (sub, name) in enumerate(items):
        src = os.path.join(folder, sub, name)
        if not os.path.lexists(src):
            continue
        if not made:
            os.makedirs(trash)
            made = True
        os.rename(src, os.path.join(trash, f"{i}-{sub}"))
        if sub in ("runs", "derived"):
            note_change(folder, sub[0], run_id)  # after the rename (see _changes)
    sidecar = run_path(folder, run_id)
    if os.path.lexists(sidecar):
        with annotations_lock(folder):  # (not under a tagger's feet)
            if not made:
                os.makedirs(trash)
                made = True
            with contextlib.suppress(FileNotFoundError):
                os.rename(sidecar, os.path.join(trash, ANNOTATIONS_DIR))
            note_change(folder, "r", run_id)
    return trash if made else None


class FileCuration:
    """Annotations and deletion of a FileStore (see the module docstring)."""

    supports_annotations: ClassVar[bool] = True

    if TYPE_CHECKING:  # provided by FileStore
        _dir: str
        _run_folders: dict[str, str]
        _meta_ready: bool

        @property
        def experiment_id(self) -> str | None: ...
        @property
        def config(self) -> Any: ...  # (a FileStoreConfig)
        def _folder(self, run_id: str) -> str: ...
        def _log_file(self, folder: str, run_id: str, name: str) -> str: ...
        def list_experiments(self) -> list[str]: ...

    # ------------------------------------------------------------ log reads
    def _log_names(self, folder: str, run_id: str, *, regular_only: bool = True) -> list[str]:
        """Names of the logs ``logs/{run_id}_{name}.log`` of ``run_id`` in ``folder``,
        sorted: regular files only (``regular_only=False``: every entry so named, a
        link or a folder too, as deletion moves them all)."""
        logs = os.path.join(folder, "logs")
        try:
            names = regular_file_names(logs) if regular_only else os.listdir(logs)
        except (FileNotFoundError, NotADirectoryError):
            return []
        prefix = f"{run_id}_"
        out = []
        for file_name in names:
            if not (file_name.startswith(prefix) and file_name.endswith(".log")):
                continue
            log_name = file_name[len(prefix):-4]
            if log_name and not _belongs_to_longer_run(folder, run_id, log_name):
                out.append(log_name)
        return sorted(out)

    def open_log(self, run_id: str, name: str = "run") -> BinaryIO | None:
        """Log ``name`` of ``run_id`` opened for binary reading (``None`` if missing).

        Raises:
            InvalidNameError: the run id or log name is not a usable name.
            NotFoundError: the log is a symbolic link, a folder or outside the
                experiment folder (see :mod:`metalab._internal._confined`).
        """
        folder = self._folder(run_id)
        try:
            return open_regular_inside(self._log_file(folder, run_id, name), folder)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------ annotations
    def _experiment_folder(self, experiment_id: str | None) -> str:
        """The folder of ``experiment_id`` (this store's when scoped and None).

        Raises:
            ScopeError: scoped to another experiment, or None on a collection.
            NotFoundError: the experiment has no folder here.
        """
        eid = experiment_id if experiment_id is not None else self.experiment_id
        if eid is None:
            raise ScopeError("name the experiment: this store holds a collection of them")
        if self.experiment_id is not None:
            if eid != self.experiment_id:
                raise ScopeError(f"this store is scoped to {self.experiment_id!r}, not {eid!r}")
            folder = self._dir
        else:
            folder = os.path.join(self._dir, safe_experiment_id(eid))
        if not os.path.isdir(folder) or eid not in self.list_experiments():
            raise NotFoundError(f"the store at {self.config.root} has no experiment {eid!r}; "
                                "list them with `metalab store ls`")
        return folder

    def _run_folders_of(self, run_ids: Iterable[str]) -> dict[str, list[str]]:
        """Run ids grouped by the folder holding them.

        Raises:
            NotFoundError: a run is not in the store (nothing was written).
        """
        groups: dict[str, list[str]] = {}
        missing = []
        for rid in dict.fromkeys(run_ids):
            check_name(rid, "run id")
            folder = self._folder(rid)
            if os.path.exists(os.path.join(folder, "runs", f"{rid}.json")):
                groups.setdefault(folder, []).append(rid)
            else:
                missing.append(rid)
        if missing:
            raise no_such_runs(missing, self._dir)
        return groups

    def annotate_runs(self, run_ids: Iterable[str], *, add_tags: Iterable[str] = (),
                      remove_tags: Iterable[str] = (), note: Any = KEEP) -> list[str]:
        """See :meth:`Store.annotate_runs`."""
        add, remove, note = check_change(add_tags, remove_tags, note)
        written: list[str] = []
        for folder, ids in self._run_folders_of(run_ids).items():
            runs = os.path.join(folder, "runs")

            def exists(rid: str, runs: str = runs) -> bool:
                return os.path.exists(os.path.join(runs, f"{rid}.json"))

            def change(rid: str, old: Annotations, folder: str = folder) -> Annotations:
                shown = _shown_without_run(folder, rid) if remove else None
                return old.changed(add=add, remove=remove, note=note, shown=shown)

            written += update_runs(folder, ids, change, exists=exists)
        return written

    def annotate_experiment(self, experiment_id: str | None = None, *,
                            add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (),
                            note: Any = KEEP) -> bool:
        """See :meth:`Store.annotate_experiment`."""
        add, remove, note = check_change(add_tags, remove_tags, note)
        folder = self._experiment_folder(experiment_id)

        def run_ids() -> list[str]:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                return [n[:-5] for n in os.listdir(os.path.join(folder, "runs"))
                        if n.endswith(".json") and n[0] != "."]
            return []

        return update_experiment(
            folder, lambda a: a.changed(add=add, remove=remove, note=note), run_ids)

    def get_annotations(self, run_id: str) -> Annotations:
        """See :meth:`Store.get_annotations`."""
        folder = self._folder(check_name(run_id, "run id"))
        return read_annotations(run_path(folder, run_id)) or Annotations()

    def executed_record(self, run_id: str) -> RunRecord | None:
        """See :meth:`Store.executed_record`."""
        path = os.path.join(self._folder(check_name(run_id, "run id")), "runs", f"{run_id}.json")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        try:
            return RunRecord.from_dict(loads(data), source=path)
        except JSONDecodeError as exc:
            raise CorruptRecordError(f"run record {path} is not valid JSON ({exc})", path) from exc

    def get_experiment_annotations(self, experiment_id: str | None = None) -> Annotations:
        """See :meth:`Store.get_experiment_annotations`."""
        folder = self._experiment_folder(experiment_id)
        return read_annotations(experiment_path(folder)) or Annotations()

    def annotated_text(self, record: RunRecord, data: bytes) -> bytes:
        """``data`` (the record file's bytes, just written) with the run's
        annotations applied: what an index of the run keeps.  ``data`` itself,
        after two ``stat`` calls, when there are none."""
        folder = self._folder(record.run_id)
        if not (os.path.exists(experiment_path(folder))
                or os.path.exists(run_path(folder, record.run_id))):
            return data
        doc = loads(data)
        return dumps(annotate_document(folder, doc)) if isinstance(doc, dict) else data

    @staticmethod
    def _annotated(folder: str, doc: dict[str, Any]) -> dict[str, Any]:
        return annotate_document(folder, doc)

    @staticmethod
    def _folder_annotations(folder: str, report: ErrorCallback) -> FolderAnnotations:
        return FolderAnnotations(folder, report)

    # ------------------------------------------------------------ deletion
    def delete_run(self, run_id: str) -> None:
        """See :meth:`Store.delete_run`; crash-safe as the module docstring says."""
        check_name(run_id, "run id")
        folder = self._folder(run_id)
        trash = _move_run_files(folder, run_id, self._log_names(folder, run_id, regular_only=False))
        self._run_folders.pop(run_id, None)
        if trash is not None:
            shutil.rmtree(trash)
            _purge_stale_trash(os.path.dirname(trash))

    def delete_experiment(self, experiment_id: str | None = None) -> bool:
        """See :meth:`Store.delete_experiment`."""
        folder = self._experiment_folder(experiment_id)
        root = os.path.dirname(folder)  # (the collection root: a folder is always below it)
        trash_root = os.path.join(root, TRASH_DIR)
        os.makedirs(trash_root, exist_ok=True)
        trash = os.path.join(trash_root, _trash_name(os.path.basename(folder)))
        os.rename(folder, trash)  # one rename: the experiment is there or gone
        fsync_dir(root)
        self._meta_ready = False
        self._run_folders = {r: f for r, f in self._run_folders.items() if f != folder}
        shutil.rmtree(trash)
        _purge_stale_trash(trash_root)
        return True

