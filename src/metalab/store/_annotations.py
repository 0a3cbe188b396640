"""Annotations: the tags and notes a user gives runs and experiments after they ran.

Where (in an experiment folder, beside the layout of :mod:`._file`)::

    annotations/{run_id}.json    the annotations of one run
    _annotations.json            the annotations of the experiment (all its runs)
    annotations/.lock            held while annotation files are read-modified-written

Why sidecar files: a run record is the result of one execution and is written
only by that execution (a retry replaces it whole); a user's tags and notes
are a result of their own.  Kept apart, neither can overwrite the other: a run
tagged while it executes keeps its tags when its final record lands, and a
re-executed run keeps them too.  Every reader of run records (the FileStore's
bulk and single reads, its SQLite catalog, the PostgreSQL index, which is fed
from those reads, and ``export_store``, which copies the folder's files) sees
a record with the annotations applied (:func:`apply_annotations`).

Format (JSON object, written atomically with fsync, then the folder fsynced)::

    {"format": "metalab-annotations", "version": 1,
     "tags": [...], "removed_tags": [...], "note": "..." | null, "updated_at": "..."}

``tags`` are added to the run's tags, ``removed_tags`` taken away (also tags
the run or the experiment had from execution time); the tags a run shows are
``((record tags + experiment's tags) - experiment's removed + run's tags) -
run's removed``, in that order, without repeats.  ``note`` (if not null)
replaces the record's ``notes``; an experiment's note is its own, not the runs'.

Concurrency: every change reads, modifies and writes the annotation files of
one experiment folder under ``annotations/.lock`` (a lock file, see
:mod:`metalab._internal._lockfile`: exclusive across threads, processes and
hosts on NFS; a holder killed with ``kill -9`` is taken over), so two taggers
at once lose nothing.  Each file is replaced by one rename: a reader, or a
crash, sees the old or the new annotations of a run, never a mix.  A change to
many runs is one rename per run, not one for all (re-running it completes it).

Change feed: after each rename, ``r {run_id}`` is appended to the folder's
change log (:func:`~._changes.note_change`), for every run of the experiment
when the experiment's file changed, so the catalog and the PostgreSQL catch-up
read those runs again.  A line lost (a crash between rename and append) is
caught by the catalog's full listing: the signature it keeps of a run file
includes those of its annotation files (:class:`FolderAnnotations.fold`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from metalab._errors import CorruptRecordError, NotFoundError, StoreError, ValidationError
from metalab._internal._atomic import atomic_write_bytes, fsync_dir, is_temp_name
from metalab._internal._json import JSONDecodeError, dumps_pretty, loads
from metalab._internal._lockfile import FileLock, hold
from metalab._internal._names import check_name
from metalab._internal._time import to_iso, utcnow
from metalab.store._changes import note_change

__all__ = [
    "ANNOTATIONS_DIR",
    "EXPERIMENT_FILE",
    "Annotations",
    "FolderAnnotations",
    "annotations_lock",
    "apply_annotations",
    "check_change",
    "check_note",
    "check_tags",
    "effective_tags",
    "experiment_path",
    "no_such_runs",
    "read_annotations",
    "run_path",
    "update_experiment",
    "update_runs",
]

ANNOTATIONS_DIR = "annotations"
EXPERIMENT_FILE = "_annotations.json"
LOCK_FILE = ".lock"
FORMAT = "metalab-annotations"
VERSION = 1
#: longest tag accepted (characters); tags are labels, not texts
MAX_TAG_CHARS = 200
#: longest note accepted (characters)
MAX_NOTE_CHARS = 100_000
#: run ids an error about missing runs names before "..."
MISSING_SHOWN = 5
#: seconds a change waits for another tagger of the same folder
LOCK_WAIT_S = 30.0
#: seconds after which an untouched annotation lock counts as abandoned
LOCK_STALE_S = 60.0

Signature = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Annotations:
    """The annotations of one run or experiment (see the module docstring).

    Attributes:
        tags: tags added.
        removed_tags: tags taken away.
        note: the note, or None for none set.
        updated_at: when they last changed (ISO text), None if never.
    """

    tags: tuple[str, ...] = ()
    removed_tags: tuple[str, ...] = ()
    note: str | None = None
    updated_at: str | None = None

    def changed(self, *, add: Iterable[str] = (), remove: Iterable[str] = (),
                note: Any = ..., shown: Collection[str] | None = None) -> Annotations:
        """A copy with tags added / removed and (unless ``...``) the note set.

        ``shown``: the tags the run shows without these annotations; a tag
        removed that is not among them is only dropped from :attr:`tags`
        (None: every removed tag is kept in :attr:`removed_tags`, as an
        experiment's must be, since it applies to runs executed later too).
        """
        tags = list(self.tags)
        removed = list(self.removed_tags)
        for tag in add:
            if tag in removed:
                removed.remove(tag)
            if tag not in tags:
                tags.append(tag)
        for tag in remove:
            if tag in tags:
                tags.remove(tag)
            if tag not in removed and (shown is None or tag in shown):
                removed.append(tag)
        new_note = self.note if note is ... else note
        return dataclasses.replace(self, tags=tuple(tags), removed_tags=tuple(removed),
                                   note=new_note)

    def same_as(self, other: Annotations) -> bool:
        """Equal but for ``updated_at``."""
        return (self.tags, self.removed_tags, self.note) == (
            other.tags, other.removed_tags, other.note)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "tags": list(self.tags),
                "removed_tags": list(self.removed_tags), "note": self.note,
                "updated_at": self.updated_at}

    @classmethod
    def from_dict(cls, d: Any, path: str) -> Annotations:
        """Raises CorruptRecordError (naming ``path``) for anything but a valid document."""
        def bad(why: str) -> CorruptRecordError:
            return CorruptRecordError(
                f"annotation file {path} {why}; restore it from a backup or delete it "
                "(which drops those tags and notes)", path)

        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise bad("is not a metalab annotation file")
        if not isinstance(d.get("version"), int) or d["version"] > VERSION:
            raise bad(f"has version {d.get('version')!r}, newer than this metalab reads")
        tags, removed, note = d.get("tags") or [], d.get("removed_tags") or [], d.get("note")
        for value in (tags, removed):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise bad("holds tags that are not a list of strings")
        if note is not None and not isinstance(note, str):
            raise bad("holds a note that is not a string")
        stamp = d.get("updated_at")
        return cls(tuple(tags), tuple(removed), note, stamp if isinstance(stamp, str) else None)


def check_tags(tags: Iterable[Any]) -> tuple[str, ...]:
    """The tags, checked: non-empty strings without line breaks, at most
    :data:`MAX_TAG_CHARS` characters.

    Raises:
        ValidationError: a tag breaks those rules, or ``tags`` is one string.
    """
    if isinstance(tags, str):
        raise ValidationError(f"tags must be a list of strings, got the string {tags!r}")
    out = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ValidationError(f"a tag must be a non-empty string, got {tag!r}")
        if len(tag) > MAX_TAG_CHARS or any(c in tag for c in "\n\r\x00"):
            raise ValidationError(
                f"tag {tag[:40]!r}... must be one line of at most {MAX_TAG_CHARS} characters"
                if len(tag) > MAX_TAG_CHARS else f"tag {tag!r} must be one line")
        out.append(tag)
    return tuple(dict.fromkeys(out))


def check_change(add_tags: Iterable[Any], remove_tags: Iterable[Any], note: Any
                 ) -> tuple[tuple[str, ...], tuple[str, ...], Any]:
    """(tags to add, tags to remove, note) checked as :func:`check_tags` and
    :func:`check_note` (the note ``...`` means "leave it"); raises as they do."""
    return check_tags(add_tags), check_tags(remove_tags), (
        note if note is ... else check_note(note))


def no_such_runs(missing: list[str], where: str) -> NotFoundError:
    """The error for run ids a store does not hold (nothing was changed)."""
    more = " ..." if len(missing) > MISSING_SHOWN else ""
    return NotFoundError(f"no run {', '.join(missing[:MISSING_SHOWN])}{more} in {where}; "
                         "nothing was changed (list the runs with `metalab runs ls`)")


def check_note(note: Any) -> str | None:
    """The note, checked (None clears it).

    Raises:
        ValidationError: not a string, or longer than :data:`MAX_NOTE_CHARS`.
    """
    if note is not None and not isinstance(note, str):
        raise ValidationError(f"a note must be a string (or None to clear it), got {note!r}")
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ValidationError(f"a note holds at most {MAX_NOTE_CHARS} characters, "
                              f"this one {len(note)}")
    return note


def run_path(folder: str, run_id: str) -> str:
    return os.path.join(folder, ANNOTATIONS_DIR, f"{check_name(run_id, 'run id')}.json")


def experiment_path(folder: str) -> str:
    return os.path.join(folder, EXPERIMENT_FILE)


def read_annotations(path: str) -> Annotations | None:
    """The annotations in ``path``; None if it does not exist.

    Raises:
        CorruptRecordError: the file exists but is not a valid annotation file.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        doc = loads(data)
    except JSONDecodeError as exc:
        raise CorruptRecordError(
            f"annotation file {path} is not valid JSON ({exc}); restore it from a backup or "
            "delete it (which drops those tags and notes)", path) from exc
    return Annotations.from_dict(doc, path)


def effective_tags(base: Iterable[str], experiment: Annotations | None,
                   run: Annotations | None) -> list[str]:
    """The tags a run shows (see the module docstring for the rule)."""
    tags = dict.fromkeys(t for t in base if isinstance(t, str))
    if experiment is not None:
        tags.update(dict.fromkeys(experiment.tags))
        for tag in experiment.removed_tags:
            tags.pop(tag, None)
    if run is not None:
        tags.update(dict.fromkeys(run.tags))
        for tag in run.removed_tags:
            tags.pop(tag, None)
    return list(tags)


def apply_annotations(doc: dict[str, Any], experiment: Annotations | None,
                      run: Annotations | None) -> dict[str, Any]:
    """``doc`` (a run record document) as readers see it: a new dict when an
    annotation applies, ``doc`` itself otherwise."""
    if experiment is None and run is None:
        return doc
    base = doc.get("tags")
    out = dict(doc)
    out["tags"] = effective_tags(base if isinstance(base, list) else (), experiment, run)
    if run is not None and run.note is not None:
        out["notes"] = run.note
    return out


def _stat(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class FolderAnnotations:
    """The annotations of one experiment folder, for reading many runs at once.

    Made once per bulk read: one ``stat`` of the experiment's file and one
    listing of ``annotations/``; a run's file is read when a run that has one
    is applied.  An unreadable annotation file is reported to ``report`` (a
    :class:`CorruptRecordError` naming it) and the run shown without it.
    Not thread-safe (one per reader).
    """

    def __init__(self, folder: str, report: Callable[[CorruptRecordError], None]) -> None:
        self._folder = folder
        self._report = report
        self.experiment_sig = _stat(experiment_path(folder))
        self.experiment: Annotations | None = None
        if self.experiment_sig is not None:
            self.experiment = self._read(experiment_path(folder))
        self.sigs: dict[str, Signature] = {}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), \
                os.scandir(os.path.join(folder, ANNOTATIONS_DIR)) as it:
            for entry in it:
                name = entry.name
                if name[0] == "." or is_temp_name(name) or not name.endswith(".json"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    self.sigs[name[:-5]] = (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def empty(self) -> bool:
        return self.experiment_sig is None and not self.sigs

    def _read(self, path: str) -> Annotations | None:
        try:
            return read_annotations(path)
        except CorruptRecordError as exc:
            self._report(exc)
            return None

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with its run's annotations and the experiment's applied."""
        if self.experiment_sig is None and not self.sigs:
            return doc
        rid = doc.get("run_id")
        run = None
        if isinstance(rid, str) and rid in self.sigs:
            run = self._read(os.path.join(self._folder, ANNOTATIONS_DIR, f"{rid}.json"))
        return apply_annotations(doc, self.experiment, run)

    def fold(self, run_id: str, sig: Signature) -> Signature:
        """A run file's signature combined with those of its annotation files, so
        the catalog reads the run again when any of them changed."""
        extra = [s for s in (self.sigs.get(run_id), self.experiment_sig) if s is not None]
        if not extra:
            return sig
        return (sig[0], sig[1] + sum(s[1] for s in extra), sig[2] + sum(s[2] for s in extra))


@contextlib.contextmanager
def annotations_lock(folder: str) -> Iterator[None]:
    """Hold ``annotations/.lock`` of ``folder`` (see the module docstring).

    Raises:
        StoreError: another tagger held it for :data:`LOCK_WAIT_S` seconds.
        OSError: the folder cannot be written.
    """
    adir = os.path.join(folder, ANNOTATIONS_DIR)
    os.makedirs(adir, exist_ok=True)

    def busy(lock: FileLock) -> StoreError:
        return StoreError(
            f"the annotations of {folder} stayed locked for {LOCK_WAIT_S:.0f} s by "
            f"{lock.holder_text()} ({lock.path}); retry later, or delete that lock file if "
            "that process no longer runs")

    with hold(os.path.join(adir, LOCK_FILE), wait=LOCK_WAIT_S, stale=LOCK_STALE_S, busy=busy):
        yield


def _write(path: str, ann: Annotations) -> None:
    atomic_write_bytes(path, dumps_pretty(ann.to_dict()), durable=True)


def update_runs(folder: str, run_ids: Iterable[str],
                change: Callable[[str, Annotations], Annotations],
                exists: Callable[[str], bool] | None = None) -> list[str]:
    """Apply ``change(run_id, old)`` to the annotations of each run of ``run_ids`` in ``folder``.

    Under the folder's annotation lock; each run's file is replaced
    atomically (fsynced, then the folder) and its change logged.  Runs whose
    annotations stay the same, and runs for which ``exists`` (checked under
    the lock, so a run deleted meanwhile gets no annotation file) says False,
    are not written.  Returns the run ids written.

    Raises:
        CorruptRecordError: a run's annotation file cannot be parsed (runs
            before it in ``run_ids`` are already written).
        StoreError, OSError: as :func:`annotations_lock`, or the write failed.
    """
    written: list[str] = []
    stamp = to_iso(utcnow())
    with annotations_lock(folder):
        for rid in run_ids:
            if exists is not None and not exists(rid):
                continue
            path = run_path(folder, rid)
            old = read_annotations(path) or Annotations()
            new = change(rid, old)
            if new.same_as(old):
                continue
            _write(path, dataclasses.replace(new, updated_at=stamp))
            note_change(folder, "r", rid)
            written.append(rid)
        if written:
            fsync_dir(os.path.join(folder, ANNOTATIONS_DIR))
    return written


def update_experiment(folder: str, change: Callable[[Annotations], Annotations],
                      run_ids: Callable[[], Iterable[str]]) -> bool:
    """Apply ``change`` to the experiment's annotations in ``folder``; True if written.

    After the write, every run of ``run_ids()`` gets a change-log line (its
    shown tags may have changed).  Raises as :func:`update_runs`.
    """
    path = experiment_path(folder)
    with annotations_lock(folder):
        old = read_annotations(path) or Annotations()
        new = change(old)
        if new.same_as(old):
            return False
        _write(path, dataclasses.replace(new, updated_at=to_iso(utcnow())))
        fsync_dir(folder)
        for rid in run_ids():
            note_change(folder, "r", rid)
    return True
