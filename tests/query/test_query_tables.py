"""Run tables and status counts: the FileStore catalog, PostgreSQL and the files agree.

A run table (``store.run_table``, what ``load_results(columns=...)`` builds
on) read back run by run must equal the projected rows of a scan of the
files; counts by status must equal counting the documents (``lost`` judged by
the one rule).  Also through ``load_results``: the same frame, the same
reported files, whichever path answered.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_support import make_doc, write_doc
from test_query_engines import fill, queries, stores

from metalab import load_results
from metalab.analysis._columns import PARTIAL, RunTable
from metalab.query import lost_cutoff, status_at_cutoff
from metalab.query._ast import Query
from metalab.query._liveness import parse_time
from metalab.store import FileStore
from metalab.store._base import Store
from metalab.store._index._catalog_table import LOAD_ORDER

_TEXTS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _stored(value: Any) -> Any:
    """A metrics value as the files hold it (non-finite numbers as their texts)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else _TEXTS[value]
    return value


def table_rows(store: Store, query: Query) -> Any:
    """The store's run table read back as projected rows (or the error's class name)."""
    try:
        answer = store.run_table(None, query)
    except Exception as exc:  # the same error class everywhere
        return type(exc).__name__
    assert answer is not None, "the index did not answer"
    table = RunTable.from_index(answer, lambda keys: {})
    rows = []
    for i in range(len(table)):
        doc = table.row_document(i)
        del doc[PARTIAL]
        for ns in ("params", "metrics", "derived"):
            if ns in doc:  # (PostgreSQL keeps a JSON null in a whole object: as absent)
                doc[ns] = {k: _stored(v) for k, v in doc[ns].items() if v is not None}
        rows.append(doc)
    return _same_times(rows)


def _same_times(rows: Any) -> Any:
    """Rows with their times as instants (PostgreSQL writes ``+00:00`` for ``Z``)."""
    if isinstance(rows, list):
        for row in rows:
            for key in ("started_at", "finished_at"):
                if key in row:
                    row[key] = parse_time(row[key])
    return rows


def scanned_rows(store: Store, query: Query) -> Any:
    """The scan's projected rows, in the order of a load when the query has none."""
    if not query.order:
        query = dataclasses.replace(query, order=LOAD_ORDER)
    try:
        return _same_times(Store.query_runs(store, None, query))
    except Exception as exc:
        return type(exc).__name__


def scanned_counts(store: Store) -> dict[str, int]:
    cutoff = lost_cutoff()
    return dict(Counter(status_at_cutoff(d, cutoff) for d in store.iter_run_documents()))


def _projected(q: Query) -> bool:
    return q.columns is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=stores(), qs=st.lists(queries().filter(_projected), min_size=4, max_size=4))
def test_catalog_table_and_counts_equal_the_files(runs: Any, qs: list[Query]) -> None:
    fs, folder = fill(runs)
    try:
        for q in qs:
            assert table_rows(fs, q) == scanned_rows(fs, q), q
        assert fs.status_counts() == scanned_counts(fs)
        assert fs._query_index.count(None, None) == len(runs) == sum(fs.status_counts().values())
    finally:
        shutil.rmtree(folder)


@settings(max_examples=6, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(runs=stores(), qs=st.lists(queries().filter(_projected), min_size=6, max_size=6))
def test_postgres_table_and_counts_equal_the_catalog_and_the_files(
        pg_factory: Any, runs: Any, qs: list[Query]) -> None:
    fs, folder = fill(runs)
    try:
        pg = pg_factory(fs)
        for q in qs:
            scanned = scanned_rows(fs, q)
            assert table_rows(fs, q) == scanned, q
            assert table_rows(pg, q) == scanned, q
        assert pg.status_counts() == fs.status_counts() == scanned_counts(fs)
    finally:
        shutil.rmtree(folder)


def _special_store(fs: FileStore) -> None:
    """Runs with infinite and NaN metrics, missing values, nested and list params,
    a lost run, and a file that is not a run record."""
    write_doc(fs, make_doc(91, metrics={"score": "Infinity", "loss": "NaN"}))
    write_doc(fs, make_doc(92, metrics={"score": "-Infinity"}, params={"lr": [1, 2]}))
    write_doc(fs, make_doc(93, params={"lr": {"a": {"b": 1}}, "flag": True, "name": "x"}))
    write_doc(fs, make_doc(94, status="running", heartbeat_at="2020-01-01T00:00:00Z"))
    write_doc(fs, make_doc(95, status="running", heartbeat_at="2100-01-01T00:00:00Z"))
    write_doc(fs, make_doc(96, status="failed", params={}, metrics={}))
    runs = os.path.join(fs.get_working_directory(), "runs")
    with open(os.path.join(runs, "broken.json"), "w") as fh:
        fh.write("{not json")


@pytest.mark.parametrize("columns", [["params.lr", "metrics.score"],
                                     ["params", "metrics.loss", "tags", "finished_at"],
                                     ["metrics", "duration_ms"]])
def test_load_results_through_the_catalog_table_equals_the_file_path(
        fstore: FileStore, columns: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _special_store(fstore)
    answered: list[Any] = []
    table = FileStore.run_table

    def spy(self: Any, *args: Any) -> Any:
        answered.append(got := table(self, *args))
        return got

    monkeypatch.setattr(FileStore, "run_table", spy)
    problems: list[Any] = []
    via_table = load_results(fstore, columns=columns, order_by=["-run_id"],
                             on_error=problems.append)
    assert answered and answered[0] is not None  # the catalog answered, as columns
    monkeypatch.setattr(FileStore, "supports_run_table", False)
    scanned: list[Any] = []
    via_files = load_results(fstore, columns=columns, order_by=["-run_id"],
                             on_error=scanned.append)
    a, b = via_table.to_dataframe(), via_files.to_dataframe()
    assert list(a.columns) == list(b.columns)
    assert a.equals(b), (a.to_string(), b.to_string())
    assert [str(p.path) for p in problems] == [str(p.path) for p in scanned] != []
    assert "broken.json" in str(problems[0].path)
    assert list(a["status"]).count("lost") == 1


def test_status_counts_judge_lost_runs_and_skip_bad_files(fstore: FileStore) -> None:
    before = fstore.status_counts()
    _special_store(fstore)
    counts = fstore.status_counts()
    assert counts == scanned_counts(fstore)
    assert (counts["lost"], counts["running"]) == (before.get("lost", 0) + 1,
                                                  before.get("running", 0) + 1)
    assert fstore._query_index.count(None, "lost") == counts["lost"]
    assert fstore._query_index.count(None, None) == sum(before.values()) + 6
    write_doc(fstore, make_doc(97, status="cancelled"))
    assert fstore.status_counts().get("cancelled", 0) == before.get("cancelled", 0) + 1


def test_a_load_of_whole_records_is_left_to_the_files(fstore: FileStore) -> None:
    """The catalog keeps no provenance, errors or series: without ``columns`` (or
    with a field it does not keep) the store reads the files."""
    from metalab.query import build_query

    _special_store(fstore)
    assert fstore.run_table(None, None) is None
    assert fstore.run_table(None, build_query(None)) is None
    assert fstore.run_table(None, build_query(None, columns=["params.lr"])) is not None


def test_a_store_whose_index_cannot_answer_counts_its_files(fstore: FileStore) -> None:
    """A read-only FileStore never refreshes its catalog: it counts by reading the
    runs, with the same answer (the unreadable file reported, not counted)."""
    from metalab.store import FileStoreConfig

    _special_store(fstore)
    config = FileStoreConfig(root=fstore.config.root, experiment_id=fstore.experiment_id,
                             read_only=True)
    reader = FileStore(config)
    assert reader._query_index.status_counts(None) is None
    assert reader.status_counts() == fstore.status_counts() == scanned_counts(fstore)
