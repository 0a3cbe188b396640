"""The FileStore catalog: a disposable SQLite cache of one experiment folder's runs.

Where: ``{experiment folder}/.catalog/catalog.sqlite`` (a hidden folder: not
part of the store layout; ``rsync --exclude .catalog`` skips it, and deleting
it is always safe).

What: one row per run file with the query fields in typed columns (one
generated column ``fN`` per parameter / metric name, ``gN`` per derived
name; see :mod:`._sqlite` for the cell encoding), plus the signature
(inode, mtime_ns, size) of the file each row was read from.

Refresh (at the start of every query, never on the write path): if the
mtime of ``runs/`` (and ``derived/``) is the one recorded at the last
listing, nothing was added, replaced or removed there (every write is a
rename into the folder, which updates its mtime) and the catalog is
current.  The recorded mtime is only trusted when it was at least
:data:`DIR_MTIME_MARGIN_NS` older than that listing, so writes within one
timestamp tick are never missed (host clocks on a shared filesystem must
agree within that margin).  Otherwise: one ``scandir`` + ``stat`` of the
folder; only files whose
signature differs from the catalog's are read (new, rewritten - an atomic
rewrite always gets a new inode -, or gone).  Temp files of writes in
progress (``.tmp-*``) are skipped; a record is only ever seen whole because
writes are atomic renames.  The signature stored is the ``fstat`` of the
descriptor that was read, so a file replaced between the listing and the
read is simply read again next time.

Concurrency and NFS: every use of the catalog (refresh + query) happens
while holding ``.catalog/lock``, a lock file created with ``O_CREAT|O_EXCL``
(atomic on local filesystems and NFSv3+; a lock older than
:data:`STALE_LOCK_S` seconds whose holder died is taken over), so SQLite never
sees two processes at once and its own fcntl locking (unreliable on NFS) is
never relied upon.  SQLite runs with the rollback journal (``journal_mode =
DELETE``; WAL needs shared memory, which NFS does not provide), and the
connection is opened and closed under the lock, so NFS close-to-open
consistency hands each process the latest file.

Never required: if the folder is read-only, the lock cannot be had within
:data:`LOCK_WAIT_S`, or SQLite fails in any way, :meth:`Catalog.query`
raises :class:`CatalogUnavailable` and the caller scans the files instead
(same answers, just slower).  A damaged catalog file is deleted and rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from metalab._internal._json import JSONDecodeError, dumps, loads
from metalab.store._query._ast import DYNAMIC, Field, Query, check_fields
from metalab.store._query._eval import (
    micros_to_iso,
    norm_number,
    norm_tags,
    parse_time,
    predicate,
)
from metalab.store._query._sqlite import COLUMN_RE, SqliteCompiler, decode, encode

__all__ = ["CATALOG_DIR", "Catalog", "CatalogUnavailable", "read_run_file"]

log = logging.getLogger("metalab.store.catalog")

CATALOG_DIR = ".catalog"
CATALOG_FILE = "catalog.sqlite"
CATALOG_VERSION = "1"
#: seconds a query waits for another process's refresh before scanning instead
LOCK_WAIT_S = 30.0
#: a lock file not touched for this long belongs to a dead process
STALE_LOCK_S = 120.0
#: more distinct field names than this: the catalog declines (queries scan)
MAX_FIELDS = 1800
_COMMIT_EVERY = 20_000
#: a folder mtime closer than this to the listing time is not trusted (clock ticks, NFS)
DIR_MTIME_MARGIN_NS = 2_000_000_000
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)

Signature = tuple[int, int, int]
Progress = Callable[[int, int | None], None]


class CatalogUnavailable(Exception):
    """The catalog cannot be used now; scan the files instead."""


def read_run_file(path: str) -> tuple[bytes, Signature] | None:
    """Bytes and (inode, mtime_ns, size) of one file, or None if it is gone."""
    try:
        fd = os.open(path, _O_READ)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        st = os.fstat(fd)
        parts = []
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        return b"".join(parts), (st.st_ino, st.st_mtime_ns, st.st_size)
    finally:
        os.close(fd)


def _listing(folder: str) -> dict[str, Signature]:
    out: dict[str, Signature] = {}
    try:
        # a descriptor-based scandir stats entries relative to the folder (fstatat),
        # not by walking the whole path again for each of possibly a million files
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return out
    try:
        with os.scandir(fd) as it:
            for entry in it:
                name = entry.name
                if name[0] == "." or not name.endswith(".json"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=True)
                except FileNotFoundError:
                    continue
                out[name[:-5]] = (st.st_ino, st.st_mtime_ns, st.st_size)
    finally:
        os.close(fd)
    return out


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS files (kind TEXT NOT NULL, file TEXT NOT NULL, ino INTEGER, "
    "mtime INTEGER, size INTEGER, PRIMARY KEY (kind, file)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fields (ns TEXT NOT NULL, name TEXT NOT NULL, col TEXT NOT NULL, "
    "PRIMARY KEY (ns, name))",
    "CREATE TABLE IF NOT EXISTS runs (file TEXT PRIMARY KEY, bad INTEGER NOT NULL DEFAULT 0, "
    "run_id, experiment_id, status, hb, started_us, finished_us, duration_ms, tags)",
    "CREATE TABLE IF NOT EXISTS derived (file TEXT PRIMARY KEY, bad INTEGER NOT NULL DEFAULT 0)",
]
_RUN_BASE = ("file", "bad", "run_id", "experiment_id", "status", "hb", "started_us",
             "finished_us", "duration_ms", "tags")


class Catalog:
    """The catalog of one experiment folder (see the module docstring).

    One object may be used from several threads (each call opens its own
    connection under the lock); several processes share the file safely.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.dir = os.path.join(folder, CATALOG_DIR)
        self.path = os.path.join(self.dir, CATALOG_FILE)
        self.lock_path = os.path.join(self.dir, "lock")
        #: files read by the last refresh (for tests and benchmarks)
        self.last_reads = 0

    # ------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _locked(self, wait: float) -> Iterator[None]:
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as exc:
            raise CatalogUnavailable(f"cannot create {self.dir}: {exc}") from None
        deadline = time.monotonic() + wait
        token = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}\n".encode()
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._break_stale()
                if time.monotonic() > deadline:
                    raise CatalogUnavailable(
                        f"{self.lock_path} is held by another process"
                    ) from None
                time.sleep(0.02)
                continue
            except OSError as exc:
                raise CatalogUnavailable(f"cannot lock {self.lock_path}: {exc}") from None
            try:
                os.write(fd, token)
            finally:
                os.close(fd)
            break
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)

    def _break_stale(self) -> None:
        try:
            st = os.stat(self.lock_path)
        except FileNotFoundError:
            return
        if time.time() - st.st_mtime <= STALE_LOCK_S:
            return
        aside = f"{self.lock_path}.stale-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.lock_path, aside)
        except OSError:
            return
        try:
            if time.time() - os.stat(aside).st_mtime <= STALE_LOCK_S:
                # a fresh lock was taken meanwhile: give it back
                with contextlib.suppress(OSError):
                    os.link(aside, self.lock_path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)

    def _touch_lock(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.lock_path)

    # ------------------------------------------------------------ connection
    def _open(self) -> sqlite3.Connection:
        for attempt in (0, 1):
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode = DELETE")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA temp_store = MEMORY")
                conn.execute("PRAGMA cache_size = -65536")
                version = None
                with contextlib.suppress(sqlite3.OperationalError):
                    row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
                    version = row[0] if row else None
                if version not in (None, CATALOG_VERSION):
                    raise sqlite3.DatabaseError(f"catalog version {version}")
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)",
                    (CATALOG_VERSION,),
                )
                return conn
            except sqlite3.DatabaseError:
                conn.close()
                if attempt:
                    raise
                log.info("catalog %s is damaged or outdated: rebuilding it", self.path)
                self._delete_files()
        raise CatalogUnavailable("unreachable")  # pragma: no cover

    def _delete_files(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)

    # ------------------------------------------------------------ fields
    @staticmethod
    def _fields(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
        out = {}
        for ns, name, col in conn.execute("SELECT ns, name, col FROM fields"):
            if not COLUMN_RE.match(col):
                raise sqlite3.DatabaseError(f"bad column name {col!r} in catalog")
            out[(ns, name)] = col
        return out

    @staticmethod
    def _add_field(conn: sqlite3.Connection, fields: dict[tuple[str, str], str],
                   ns: str, name: str) -> str:
        if len(fields) >= MAX_FIELDS:
            raise CatalogUnavailable(f"more than {MAX_FIELDS} distinct field names")
        prefix = "g" if ns == "derived" else "f"
        col = f"{prefix}{len(fields) + 1}"
        conn.execute(f"ALTER TABLE {'derived' if ns == 'derived' else 'runs'} ADD COLUMN {col}")
        conn.execute("INSERT INTO fields (ns, name, col) VALUES (?, ?, ?)", (ns, name, col))
        fields[(ns, name)] = col
        return col

    # ------------------------------------------------------------ refresh
    def _refresh(self, conn: sqlite3.Connection, progress: Progress | None = None) -> int:
        reads = 0
        for kind, sub in (("run", "runs"), ("derived", "derived")):
            path = os.path.join(self.folder, sub)
            key = f"dir:{sub}"
            try:
                dir_mtime = str(os.stat(path).st_mtime_ns)
            except FileNotFoundError:
                dir_mtime = "missing"
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] == dir_mtime:
                continue  # no file was added, replaced or removed since the last listing
            listed_at = time.time_ns()
            listing = _listing(path)
            # trust the folder's mtime next time only if it is clearly older than
            # this listing (a write in the same clock tick would not change it)
            trusted = dir_mtime if dir_mtime == "missing" or int(dir_mtime) < listed_at - DIR_MTIME_MARGIN_NS else ""
            old: dict[str, Signature] = {
                f: (i, m, s)
                for f, i, m, s in conn.execute(
                    "SELECT file, ino, mtime, size FROM files WHERE kind = ?", (kind,)
                )
            }
            changed = [f for f, sig in listing.items() if old.get(f) != sig]
            gone = [f for f in old if f not in listing]
            if not changed and not gone:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, trusted))
                continue
            table = "runs" if kind == "run" else "derived"
            conn.execute("BEGIN IMMEDIATE")
            try:
                fields = self._fields(conn)
                if gone:
                    conn.executemany(f"DELETE FROM {table} WHERE file = ?", [(f,) for f in gone])
                    conn.executemany("DELETE FROM files WHERE kind = ? AND file = ?",
                                     [(kind, f) for f in gone])
                batch: list[tuple[str, Signature | None, dict[str, Any] | None]] = []
                for n, stem in enumerate(changed, 1):
                    got = read_run_file(os.path.join(self.folder, sub, stem + ".json"))
                    reads += 1
                    if got is None:
                        batch.append((stem, None, None))
                    else:
                        data, sig = got
                        try:
                            doc = loads(data)
                        except JSONDecodeError:
                            doc = None
                        batch.append((stem, sig, doc if type(doc) is dict else None))
                    if len(batch) >= 2000 or n == len(changed):
                        self._write_batch(conn, kind, batch, fields)
                        batch = []
                        self._touch_lock()
                        if progress is not None:
                            progress(n, len(changed))
                    if n % _COMMIT_EVERY == 0:
                        conn.execute("COMMIT")
                        conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, trusted))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        self.last_reads = reads
        return reads

    def _write_batch(
        self,
        conn: sqlite3.Connection,
        kind: str,
        batch: list[tuple[str, Signature | None, dict[str, Any] | None]],
        fields: dict[tuple[str, str], str],
    ) -> None:
        table = "runs" if kind == "run" else "derived"
        rows: list[dict[str, Any]] = []
        sigs: list[tuple[str, str, int, int, int]] = []
        gone: list[tuple[str]] = []
        for stem, sig, doc in batch:
            if sig is None:
                gone.append((stem,))
                continue
            sigs.append((kind, stem, *sig))
            row: dict[str, Any] = {"file": stem, "bad": 0}
            if doc is None:
                row["bad"] = 1
            elif kind == "run":
                row.update(self._run_cells(doc))
                for ns in ("params", "metrics"):
                    values = doc.get(ns)
                    if isinstance(values, dict):
                        for name, value in values.items():
                            col = fields.get((ns, name)) or self._add_field(conn, fields, ns, name)
                            row[col] = encode(value)
            else:
                for name, value in doc.items():
                    col = fields.get(("derived", name)) or self._add_field(
                        conn, fields, "derived", name)
                    row[col] = encode(value)
            rows.append(row)
        if gone:
            conn.executemany(f"DELETE FROM {table} WHERE file = ?", gone)
            conn.executemany("DELETE FROM files WHERE kind = ? AND file = ?",
                             [(kind, g[0]) for g in gone])
        if rows:
            prefix = "g" if kind == "derived" else "f"
            cols = list(_RUN_BASE) if kind == "run" else ["file", "bad"]
            cols += [c for c in fields.values() if c[0] == prefix]
            marks = ", ".join("?" * len(cols))
            conn.executemany(
                f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                [tuple(r.get(c) for c in cols) for r in rows],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO files (kind, file, ino, mtime, size) VALUES (?, ?, ?, ?, ?)",
                sigs,
            )

    @staticmethod
    def _run_cells(doc: dict[str, Any]) -> dict[str, Any]:
        def text(key: str) -> str | None:
            v = doc.get(key)
            return v if isinstance(v, str) else None

        return {
            "run_id": text("run_id"),
            "experiment_id": text("experiment_id"),
            "status": text("status"),
            "hb": parse_time(doc.get("heartbeat_at") or doc.get("started_at")),
            "started_us": parse_time(doc.get("started_at")),
            "finished_us": parse_time(doc.get("finished_at")),
            "duration_ms": encode(norm_number(doc.get("duration_ms"))),
            "tags": dumps(norm_tags(doc.get("tags"))).decode(),
        }

    # ------------------------------------------------------------ public
    def refresh(self, progress: Progress | None = None, *, rebuild: bool = False) -> int:
        """Bring the catalog up to date; returns the number of files read.

        ``rebuild`` deletes it first.  Raises CatalogUnavailable.
        """
        try:
            with self._locked(LOCK_WAIT_S):
                if rebuild:
                    self._delete_files()
                conn = self._open()
                try:
                    return self._refresh(conn, progress)
                finally:
                    conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise CatalogUnavailable(f"catalog {self.path}: {exc}") from exc

    def query(self, query: Query, cutoff: int) -> list[dict[str, Any]]:
        """Answer ``query`` from the refreshed catalog.

        Returns projected documents, or whole run documents (read from the
        matching files) when ``query.columns`` is None.

        Raises:
            CatalogUnavailable: use a scan instead.
            UnknownFieldError: a field no run has.
        """
        try:
            with self._locked(LOCK_WAIT_S):
                conn = self._open()
                try:
                    self._refresh(conn)
                    rows, fields = self._select(conn, query, cutoff)
                finally:
                    conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise CatalogUnavailable(f"catalog {self.path}: {exc}") from exc
        if query.columns is None:
            return self._documents(rows, query, cutoff)
        read = self._row_reader(query.columns, fields)
        return [read(row) for row in rows]

    def _select(
        self, conn: sqlite3.Connection, query: Query, cutoff: int
    ) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str], str]]:
        fields = self._fields(conn)

        def has_values(ns: str, col: str) -> bool:
            table = "derived" if ns == "derived" else "runs"
            return conn.execute(
                f"SELECT 1 FROM {table} WHERE bad = 0 AND {col} IS NOT NULL LIMIT 1"
            ).fetchone() is not None

        named = {(f.ns, f.name) for f in query.fields() if f.ns in DYNAMIC and f.name}
        if named and not all(k in fields and has_values(k[0], fields[k]) for k in named):
            any_runs = conn.execute("SELECT 1 FROM runs WHERE bad = 0 LIMIT 1").fetchone()
            check_fields(
                query,
                lambda: [f"{ns}.{n}" for (ns, n), col in fields.items() if has_values(ns, col)],
                any_runs=any_runs is not None,
            )

        def column_of(field: Field) -> str | None:
            col = fields.get((field.ns, field.name))
            if col is None:
                return None
            return f"d.{col}" if field.ns == "derived" else f"r.{col}"

        comp = SqliteCompiler(column_of, cutoff)
        where = comp.where(query.where)
        order = comp.order(query)
        if query.columns is None:
            select = "r.file"
        else:
            select = "r.run_id, r.experiment_id, " + comp.expr(Field("status")) + ", r.started_us"
            for f in query.columns:
                if f.ns in ("params", "metrics", "derived") and not f.name:
                    cols = [column_of(Field(ns, n)) for (ns, n) in fields if ns == f.ns]
                    select += "".join(f", {c}" for c in cols)
                elif f.ns in ("params", "metrics", "derived"):
                    select += f", {column_of(f) or 'NULL'}"
                elif f.ns != "status":
                    select += f", {comp.expr(f)}"
        join = " LEFT JOIN derived d ON d.file = r.file" if query.uses_derived else ""
        sql = f"SELECT {select} FROM runs r{join} WHERE r.bad = 0 AND {where} ORDER BY {order}"
        if query.limit is not None:
            sql += f" LIMIT {comp.bind(query.limit)}"
        return conn.execute(sql, comp.params).fetchall(), fields

    @staticmethod
    def _row_reader(columns: tuple[Field, ...], fields: dict[tuple[str, str], str]
                    ) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
        """A function turning one SELECT row into a projected document."""
        plan: list[tuple[str, str, str, int]] = []  # (kind, ns, name, index)
        i = 4
        for f in columns:
            if f.ns in DYNAMIC:
                names = [n for (ns, n) in fields if ns == f.ns] if not f.name else [f.name]
                plan.append(("ns", f.ns, "", -1))
                for name in names:
                    plan.append(("dyn", f.ns, name, i))
                    i += 1
            elif f.ns in ("started_at", "finished_at"):
                plan.append(("time", f.ns, "", i))
                i += 1
            elif f.ns == "tags":
                plan.append(("tags", f.ns, "", i))
                i += 1
            elif f.ns != "status":
                plan.append(("plain", f.ns, "", i))
                i += 1

        def read(row: tuple[Any, ...]) -> dict[str, Any]:
            out: dict[str, Any] = {
                "run_id": row[0], "experiment_id": row[1], "status": row[2],
                "started_at": micros_to_iso(row[3]),
            }
            for kind, ns, name, j in plan:
                if kind == "dyn":
                    v = row[j]
                    if v is not None:
                        out[ns][name] = decode(v) if type(v) is bytes else v
                elif kind == "ns":
                    out.setdefault(ns, {})
                elif kind == "time":
                    out[ns] = micros_to_iso(row[j])
                elif kind == "tags":
                    out[ns] = loads(row[j]) if row[j] else []
                else:
                    v = row[j]
                    out[ns] = decode(v) if type(v) is bytes else v
            return out

        return read

    def _documents(self, rows: list[tuple[Any, ...]], query: Query,
                   cutoff: int) -> list[dict[str, Any]]:
        # files may have changed since the refresh: re-check what was read
        recheck = None if query.uses_derived else predicate(query.where, cutoff)
        docs = []
        for (stem,) in rows:
            got = read_run_file(os.path.join(self.folder, "runs", stem + ".json"))
            if got is None:
                continue
            try:
                doc = loads(got[0])
            except JSONDecodeError:
                continue
            if type(doc) is not dict or (recheck is not None and not recheck(doc, None)):
                continue
            docs.append(doc)
        return docs

