"""The rows of the FileStore catalog: run and derived documents as typed SQLite cells, and back.

:class:`CatalogRows` turns a batch of parsed files into rows (see "Cost of a
refresh" in :mod:`._catalog`); :func:`row_reader` turns a row of a projected
query back into a document.  The cell encoding is :mod:`._sqlite`'s; the
fixed cells of a run follow the row rules of :mod:`._rows`, shared with the
PostgreSQL index.  Not thread-safe (one refresh at a time, under the
catalog's lock).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import sqlite3
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from metalab._internal._json import NON_FINITE_TEXTS, dumps, loads
from metalab.model import RECORD_SCHEMA_VERSION
from metalab.query._ast import DYNAMIC, Field
from metalab.query._eval import micros_to_iso, norm_number, norm_tags
from metalab.query._liveness import parse_time
from metalab.query._records import STATUS_VALUES, record_problem
from metalab.store._index._rows import row_stamp
from metalab.store._index._sqlite import NAN, decode, encode

__all__ = ["GONE", "RUN_BASE", "SIG_COLUMNS", "CatalogRows", "Signature", "row_reader"]

Signature = tuple[int, int, int]

#: the types of a JSON value stored as is in a cell (an int beyond 64 bits is
#: caught when it is bound, see ``_Rows.write``; bools, lists, objects: encode())
_PLAIN_CELL = frozenset({float, str, int, type(None)})
#: more distinct sets of names than this in one batch: one NULL-padded statement
_MAX_SHAPES = 32
_STR = frozenset({str})
_FLOAT = frozenset({float})
_DICT = frozenset({dict})
_NUMBER_TEXTS = frozenset(NON_FINITE_TEXTS)
_NUMBER_CELLS: dict[str, Any] = {"Infinity": math.inf, "-Infinity": -math.inf,
                                 "NaN": bytearray(NAN)}
_LIST = frozenset({list})
_BOOL = {bool}
#: the keys a run's fixed cells, params and metrics are read from (in that order)
_RUN_KEY_NAMES = ("run_id", "experiment_id", "status", "started_at", "heartbeat_at",
                  "finished_at", "duration_ms", "tags", "params", "metrics", "schema_version")
_RUN_KEYS = operator.itemgetter(*_RUN_KEY_NAMES)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_TRUE_CELL, _FALSE_CELL = bytearray(b"\x01"), bytearray(b"\x00")
#: (only for a column whose values are all booleans: 1 and True are equal keys)
_BOOL_CELLS = {True: _TRUE_CELL, False: _FALSE_CELL}
#: how names become bytes (as ``os.fsencode``, without its call per name)
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
#: cells that are their own value (no NULL, no blob)
_PLAIN_VALUE = frozenset({float, int, str})
#: a REAL infinity read from a metrics / derived cell -> its stored text
_INFINITY_TEXTS = {math.inf: "Infinity", -math.inf: "-Infinity"}
#: the namespaces whose values may be non-finite numbers, stored as texts
#: (see metalab._internal._json): their cells and those texts
_NUMBER_SPACES = frozenset({"metrics", "derived"})
#: bad: 0 a run document, 1 a file that is not a run record (see ``record_problem``: never a
#: row of a query, named in a warning by each query), 2 (new rows only) the file is gone
GONE = 2
SIG_COLUMNS = ("file", "ino", "mtime", "size")
RUN_BASE = ("file", "bad", "run_id", "experiment_id", "status", "hb", "started_us",
             "finished_us", "duration_ms", "tags")


class CatalogRows:
    """The rows of a batch of files of one kind, written by :meth:`write`.

    :meth:`add` only collects the parsed documents; :meth:`write` turns the
    batch into rows column by column (runs of a sweep share their names and
    value types, so most of the work is done by C loops over whole columns:
    a column of plain values is bound as it is, only a column holding
    booleans, lists or objects is converted value by value).  Each row binds
    just the columns of its names (no NULL padding): its shape is the
    (namespace, names) of each of its parts, and the runs of one experiment
    share a few shapes, so a batch is a few ``executemany``.
    """

    def __init__(self, conn: sqlite3.Connection, kind: str,
                 fields: dict[tuple[str, str], str], table: str, *,
                 add_field: Callable[[str, str], str], tombstones: bool = False) -> None:
        """``add_field(ns, name)``: give a new name a column (added to ``fields``)."""
        self.conn = conn
        self.kind = kind
        self.add_field = add_field
        #: the table written (a main table, or a delta)
        self.table = table
        #: files gone are written as rows with ``bad = 2`` (appended runs, a delta)
        #: instead of deleted
        self.tombstones = tombstones
        # (the columns bound; ``bad`` is a constant of each statement; a run row
        # also binds ``h``, the key of its name)
        self.base: tuple[str, ...] = (
            ("file", "h", *SIG_COLUMNS[1:], *RUN_BASE[2:]) if kind == "run" else SIG_COLUMNS)
        self.fields = fields
        #: (namespace, names) -> their columns
        self.names_cols: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        #: (stem, signature, document) of each file read
        self.items: list[tuple[str, Signature, dict[str, Any]]] = []
        #: the rows of files that are not a JSON object (stored as "bad")
        self.bad: list[list[Any]] = []
        self.gone: list[str] = []
        self.tags: dict[tuple[Any, ...], str] = {}

    def add(self, stem: str, sig: Signature, doc: dict[str, Any] | None) -> None:
        if doc is None:
            self.bad.append([stem, *sig])
        else:
            self.items.append((stem, sig, doc))

    def _columns_of(self, ns: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """The columns of a set of names of ``ns`` (new names get a column)."""
        key = (ns, names)
        known = self.names_cols.get(key)
        if known is None:
            fields = self.fields
            known = self.names_cols[key] = tuple(
                fields.get((ns, name)) or self.add_field(ns, name)
                for name in names
            )
        return known

    def _run_columns(self, stems: tuple[str, ...], sigs: tuple[Signature, ...],
                     docs: tuple[dict[str, Any], ...]
                     ) -> tuple[list[Sequence[Any]], Sequence[Any], Sequence[Any]]:
        """The columns of the fixed run cells (``self.base``, in that order), then
        the params and the metrics of each run."""
        duration: Sequence[Any]
        try:  # the record documents metalab writes have every key
            (run_id, eid, status, started_raw, beats, finished_raw, duration, tags_col,
             params, metrics, versions) = zip(*map(_RUN_KEYS, docs), strict=True)
        except KeyError:  # written by hand or another tool
            (run_id, eid, status, started_raw, beats, finished_raw, duration, tags_col,
             params, metrics, versions) = (tuple(d.get(k) for d in docs) for k in _RUN_KEY_NAMES)
        if not _all_runs(run_id, eid, status, started_raw, versions):
            raise _NotRuns

        def text(col: Sequence[Any]) -> Sequence[Any]:
            if _STR.issuperset(map(type, col)):
                return col
            return [v if type(v) is str else None for v in col]

        started = _times(started_raw)
        # the liveness stamp of each running run (row_stamp); one that is not a time: None
        hb = ([None] * len(status) if "running" not in status
              else _times(list(map(row_stamp, status, beats, started_raw))))
        finished = _times(finished_raw)
        if not _FLOAT.issuperset(map(type, duration)):
            duration = tuple(v if type(v) is float else encode(norm_number(v)) for v in duration)
        tag_cells = self._tag_cells(tags_col)
        return ([stems, _hashes(stems), *zip(*sigs, strict=True), text(run_id), text(eid),
                 text(status), hb, started, finished, duration, tag_cells], params, metrics)

    def _tag_cells(self, tags_col: Sequence[Any]) -> list[str]:
        """The ``tags`` cell of each run (JSON text of its list of tags); the runs
        of a sweep share a few lists, each encoded once (C loops when every
        run's tags are a list of texts, as metalab writes them)."""
        cache = self.tags
        if (_LIST.issuperset(map(type, tags_col))
                and _STR.issuperset(map(type, itertools.chain.from_iterable(tags_col)))):
            # (texts only: no two lists of different tags are equal keys)
            keyed = list(map(tuple, tags_col))
            todo = set(keyed).difference(cache)
            if len(cache) + len(todo) > 1000:
                cache.clear()
                todo = set(keyed)
            for tkey in todo:
                cache[tkey] = dumps(list(tkey)).decode()
            return list(map(cache.__getitem__, keyed))
        return list(map(_tags_cell, tags_col))

    @staticmethod
    def _value_columns(maps: Sequence[dict[str, Any]], numbers: bool = False
                       ) -> list[Sequence[Any]]:
        """The cells of maps that all have the same keys in the same order, by column.

        ``numbers``: metrics or derived values, whose texts ``"Infinity"``,
        ``"-Infinity"`` and ``"NaN"`` are numbers (cells: a REAL infinity, the
        NaN blob; see :mod:`._sqlite`); only a column holding texts is checked.
        """
        out: list[Sequence[Any]] = []
        plain = _PLAIN_CELL
        for col in zip(*map(dict.values, maps), strict=True):
            types = set(map(type, col))
            if plain.issuperset(types):
                cells: Sequence[Any] = col
            elif types == _BOOL:
                cells = list(map(_BOOL_CELLS.__getitem__, col))
            else:  # lists, objects, or mixed kinds
                cells = [v if type(v) in plain else _TRUE_CELL if v is True
                         else _FALSE_CELL if v is False else _cell(v) for v in col]
            if numbers and str in types:
                try:
                    texts = not _NUMBER_TEXTS.isdisjoint(col)
                except TypeError:  # (a list or object in the column: look at each cell)
                    texts = True
                if texts:
                    cells = [_NUMBER_CELLS.get(c, c) if type(c) is str else c for c in cells]
            out.append(cells)
        return out

    def _statements(self) -> list[tuple[int, tuple[str, ...], Sequence[Sequence[Any]]]]:
        """(bad, columns, rows) of each statement of the batch."""
        statements: list[tuple[int, tuple[str, ...], Sequence[Sequence[Any]]]] = []
        if self.bad:
            if self.kind == "run":
                statements.append((1, ("h", *SIG_COLUMNS), [
                    [h, *row] for h, row in zip(_hashes([r[0] for r in self.bad]), self.bad,
                                                strict=True)]))
            else:
                statements.append((1, SIG_COLUMNS, self.bad))
        if not self.items:
            return statements
        stems, sigs, docs = zip(*self.items, strict=True)
        fixed: list[Sequence[Any]]
        parts: list[tuple[str, Sequence[Any]]]
        if self.kind == "run":
            fixed, params, metrics = self._run_columns(stems, sigs, docs)
            parts = [("params", params), ("metrics", metrics)]
        else:
            fixed = [stems, *zip(*sigs, strict=True)]
            parts = [("derived", docs)]
        # the names of each part of each file (runs of a sweep: one set per part)
        names: list[list[tuple[Any, ...] | None]] = [
            list(map(tuple, values)) if _DICT.issuperset(map(type, values)) and all(values)
            else [tuple(v) if type(v) is dict and v else None for v in values]
            for _, values in parts]
        n = len(docs)
        if all(col.count(col[0]) == n for col in names):
            groups: dict[tuple[Any, ...], list[int] | None] = {
                tuple(col[0] for col in names): None}
        else:
            groups = {}
            for i, shape in enumerate(zip(*names, strict=True)):
                groups.setdefault(shape, []).append(i)  # type: ignore[union-attr]
        for shape, idx in groups.items():
            cols = self.base
            columns = list(fixed) if idx is None else [[c[i] for i in idx] for c in fixed]
            for (ns, values), part_names in zip(parts, shape, strict=True):
                if part_names is None:
                    continue
                cols += self._columns_of(ns, part_names)
                columns += self._value_columns(values if idx is None
                                               else [values[i] for i in idx],
                                               ns in _NUMBER_SPACES)
            statements.append((0, cols, list(zip(*columns, strict=True))))
        return statements

    def _set_aside_invalid(self) -> None:
        """Move the run documents that are not run records (see ``record_problem``:
        no run_id, an unknown status, ...) to the bad rows: never a row of a run."""
        keep = []
        for item in self.items:
            if record_problem(item[2]) is None:
                keep.append(item)
            else:
                self.bad.append([item[0], *item[1]])
        self.items = keep

    def write(self) -> None:
        """Store the rows added (and drop the files gone) in the open transaction."""
        conn, kind, table = self.conn, self.kind, self.table
        if self.gone and kind == "run":  # (run rows are only ever appended)
            conn.executemany(f"INSERT INTO {table} (file, h, bad) VALUES (?, ?, {GONE})",
                             zip(self.gone, _hashes(self.gone), strict=True))
        elif self.gone:
            sql = (f"INSERT OR REPLACE INTO {table} (file, bad) VALUES (?, {GONE})"
                   if self.tombstones else f"DELETE FROM {table} WHERE file = ?")
            conn.executemany(sql, [(g,) for g in self.gone])
        try:
            statements = self._statements()
        except _NotRuns:  # (raised before anything is written)
            self._set_aside_invalid()
            statements = self._statements()
        good = [st for st in statements if not st[0]]
        if len(good) > _MAX_SHAPES:  # many sets of names: one statement, NULL-padded
            spaces = ("params", "metrics") if kind == "run" else ("derived",)
            wide = self.base + tuple(c for (ns, _), c in self.fields.items() if ns in spaces)
            at = {c: i for i, c in enumerate(wide)}
            padded = []
            for _, cols, rows in good:
                spots = [at[c] for c in cols]
                for row in rows:
                    full: list[Any] = [None] * len(wide)
                    for i, cell in zip(spots, row, strict=True):
                        full[i] = cell
                    padded.append(full)
            statements = [st for st in statements if st[0]] + [(0, wide, padded)]
        for bad, cols, rows in statements:
            sql = (f"INSERT OR REPLACE INTO {table} (bad, {', '.join(cols)}) "
                   f"VALUES ({bad}, {', '.join('?' * len(cols))})")
            try:
                conn.executemany(sql, rows)
            except OverflowError:  # an integer beyond 64 bits: a REAL, as encode() does
                # (the rows inserted before it are replaced: by file in a table keyed
                # by file, by the newer rows of their files in ``runs``)
                conn.executemany(sql, [[encode(c) if type(c) is int else c for c in row]
                                       for row in rows])
        self.items.clear()
        self.bad.clear()
        self.gone.clear()


_encode_name = functools.partial(str.encode, encoding=_FS_ENCODING, errors=_FS_ERRORS)
_STR_OR_NONE = frozenset({str, type(None)})
_INT_OR_NONE = frozenset({int, type(None)})
_KNOWN_VERSIONS = frozenset({None, *range(1, RECORD_SCHEMA_VERSION + 1)})


class _NotRuns(Exception):
    """A batch holds documents that are not run records (see ``_all_runs``)."""


def _all_runs(run_id: Sequence[Any], eid: Sequence[Any], status: Sequence[Any],
              started: Sequence[Any], versions: Sequence[Any]) -> bool:
    """Whether every document of a batch (given by these columns, a schema
    version None meaning absent) is a run record by ``record_problem``'s rule;
    C loops over the columns (each set test after the type test that makes it safe)."""
    return bool(
        _STR.issuperset(map(type, run_id)) and all(run_id)
        and _STR.issuperset(map(type, eid)) and all(eid)
        and _STR.issuperset(map(type, status)) and STATUS_VALUES.issuperset(status)
        and _STR_OR_NONE.issuperset(map(type, started))
        and _INT_OR_NONE.issuperset(map(type, versions))
        and (_KNOWN_VERSIONS.issuperset(versions) or max(
            v for v in versions if v is not None) <= RECORD_SCHEMA_VERSION))


def _hashes(names: Iterable[str]) -> list[int]:
    """The key of each file name (column ``h`` of ``runs``, and of a merged row
    in ``runs_keys``): the CRC-32 of the name's bytes as a signed 32-bit
    integer (4 bytes in a record, so the key table stays small; names sharing
    a key are told apart by the name itself).  C loops: 0.2 ms per 1,000."""
    return [c - 0x80000000 for c in map(zlib.crc32, map(_encode_name, names))]


def _tags_cell(tags: Any) -> str:
    """The ``tags`` cell of one run (see ``norm_tags``)."""
    if not tags:
        return "[]"
    if type(tags) is list and _STR.issuperset(map(type, tags)):
        return dumps(tags).decode()
    return dumps(norm_tags(tags)).decode()


def _times(values: Sequence[Any]) -> list[int | None]:
    """``parse_time`` of each value (µs since the epoch, None when absent or not
    a time); the ISO texts with a zone that metalab writes take a C-only path."""
    fromiso = datetime.fromisoformat
    try:
        return [(fromiso(v) - _EPOCH) // _ONE_US if v else None for v in values]
    except (TypeError, ValueError):  # a naive time, not a text, not a time
        return [parse_time(v) if v else None for v in values]


def _cell(value: Any) -> Any:
    """encode(), with a blob as a bytearray: sqlite3 binds it without its slow
    adaptation lookup (which ``bytes`` and ``None`` go through); the same BLOB."""
    if value is True:
        return _TRUE_CELL
    if value is False:
        return _FALSE_CELL
    cell = encode(value)
    return bytearray(cell) if type(cell) is bytes else cell


def row_reader(columns: tuple[Field, ...], fields: dict[tuple[str, str], str]
                ) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """A function turning one SELECT row into a projected document.

    The values of a namespace are consecutive cells: a run whose cells
    are all plain numbers or texts (a typical sweep) gets its dict from
    one ``zip`` of names and cells; other runs go value by value (NULL:
    left out; a blob: decoded).  Values come out as the files hold them:
    an infinite metrics / derived cell as ``"Infinity"`` / ``"-Infinity"``
    (a NaN cell decodes to ``"NaN"``).
    """
    # (kind, ns, names of a "dyn" / "num" slice, first index, end index)
    plan: list[tuple[str, str, tuple[str, ...], int, int]] = []
    i = 4
    for f in columns:
        if f.ns in DYNAMIC:
            names = tuple(n for (ns, n) in fields if ns == f.ns) if not f.name else (f.name,)
            kind = "num" if f.ns in _NUMBER_SPACES else "dyn"
            if plan and plan[-1][0] == kind and plan[-1][1] == f.ns:  # one slice
                _, ns, before, start, _ = plan.pop()
                plan.append((kind, ns, before + names, start, i + len(names)))
            else:
                plan.append((kind, f.ns, names, i, i + len(names)))
            i += len(names)
        elif f.ns in ("started_at", "finished_at"):
            plan.append(("time", f.ns, (), i, i + 1))
            i += 1
        elif f.ns == "tags":
            plan.append(("tags", f.ns, (), i, i + 1))
            i += 1
        elif f.ns != "status":
            plan.append(("plain", f.ns, (), i, i + 1))
            i += 1
    plain = _PLAIN_VALUE
    infinities = _INFINITY_TEXTS

    def read(row: tuple[Any, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": row[0], "experiment_id": row[1], "status": row[2],
            "started_at": micros_to_iso(row[3]),
        }
        for kind, ns, names, j, end in plan:
            if kind == "dyn" or kind == "num":
                cells = row[j:end]
                bucket = out.setdefault(ns, {})
                if plain.issuperset(map(type, cells)) and (
                        kind == "dyn" or infinities.keys().isdisjoint(cells)):
                    bucket.update(zip(names, cells, strict=True))
                else:
                    bucket.update({n: decode(v) if type(v) is bytes
                                   else infinities.get(v, v) if kind == "num"
                                   and type(v) is float else v
                                   for n, v in zip(names, cells, strict=True)
                                   if v is not None})
            elif kind == "time":
                out[ns] = micros_to_iso(row[j])
            elif kind == "tags":
                out[ns] = loads(row[j]) if row[j] else []
            else:
                v = row[j]
                out[ns] = decode(v) if type(v) is bytes else v
        return out

    return read
