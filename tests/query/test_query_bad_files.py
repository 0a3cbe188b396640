"""Files in runs/ that are not run records: skipped and named on every query path, never a row."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from query_support import make_doc, write_doc

import metalab
from metalab.cli import cli
from metalab.store import FileStore
from metalab.store._index import _catalog

BAD = {
    "broken": b'{"run_id": "broken", "status": "succ',  # a torn write
    "noid": json.dumps({"experiment_id": "q:1", "status": "success",
                        "params": {"depth": 1}}).encode(),  # no run_id
    "bogus": json.dumps(make_doc(90, status="exploded")).encode(),  # no such status
    "listy": b"[1, 2, 3]",  # not an object
}


def _add_bad_files(store: FileStore) -> dict[str, str]:
    from metalab.store._changes import note_change

    folder = store.get_working_directory()
    paths = {}
    for stem, data in BAD.items():
        path = os.path.join(folder, "runs", f"{stem}.json")
        with open(path, "wb") as fh:
            fh.write(data)
        note_change(folder, "r", stem)
        paths[stem] = path
    return paths


def _said(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.fixture(params=["catalog", "scan", "postgres"])
def engine(request: pytest.FixtureRequest, fstore: FileStore,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    """A store over ``fstore`` answering queries the named way (after the bad files are in)."""
    if request.param == "scan":
        def unavailable(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise _catalog.CatalogUnavailable("test: scan instead")
        monkeypatch.setattr(_catalog.Catalog, "query", unavailable)
    if request.param != "postgres":
        yield lambda: fstore
        return
    pg_factory = request.getfixturevalue("pg_factory")
    yield lambda: pg_factory(fstore)


@pytest.mark.parametrize("columns", [None, ["params.depth", "metrics.score"]])
@pytest.mark.parametrize("where", [None, "params.depth >= 0"])
def test_bad_files_are_skipped_and_named(
    fstore: FileStore, engine: Callable[[], Any], caplog: pytest.LogCaptureFixture,
    columns: list[str] | None, where: str | None,
) -> None:
    paths = _add_bad_files(fstore)
    store = engine()
    with caplog.at_level(logging.WARNING):
        found = store.query_runs(None, where, columns=columns)
    ids = [d["run_id"] for d in found]
    assert ids == [f"r{i:03d}" for i in range(20)]  # no blank row, no "bogus" run
    said = _said(caplog)
    for path in paths.values():
        assert path in said, f"{path} not named in: {said}"


def test_a_record_gone_bad_after_the_refresh_is_named(
    fstore: FileStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    fstore.query_runs(None, "params.depth = 0", columns=None)  # the catalog knows r000 now
    path = os.path.join(fstore.get_working_directory(), "runs", "r000.json")
    real = _catalog.Catalog._refresh

    def refresh_then_break(self: Any, *args: Any, **kwargs: Any) -> int:
        n = real(self, *args, **kwargs)
        with open(path, "wb") as fh:  # torn between the refresh and the read
            fh.write(b'{"run_id": "r0')
        return n

    monkeypatch.setattr(_catalog.Catalog, "_refresh", refresh_then_break)
    with caplog.at_level(logging.WARNING):
        found = fstore.query_runs(None, "params.depth = 0")
    assert [d["run_id"] for d in found] == ["r005", "r010", "r015"]
    assert path in _said(caplog)


def test_load_results_with_a_query_collects_the_skipped_files(fstore: FileStore) -> None:
    paths = _add_bad_files(fstore)
    seen: list[Exception] = []
    results = metalab.load_results(fstore, where="params.depth >= 0", on_error=seen.append)
    assert len(results) == 20
    assert sorted(str(getattr(e, "path", "")) for e in seen) == sorted(paths.values())
    assert len(results.problems) == len(paths)


def test_cli_runs_ls_prints_the_skipped_files_on_stderr(fstore: FileStore) -> None:
    paths = _add_bad_files(fstore)
    write_doc(fstore, make_doc(20))
    result = CliRunner().invoke(cli, ["runs", "ls", "-s", fstore.config.root, "-c",
                                      "params.depth"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "(21 runs)"
    for line in result.stdout.splitlines()[1:-1]:
        assert line.startswith("r0"), f"phantom row: {line!r}"
    for path in paths.values():
        assert path in result.stderr
    assert all(path not in result.stdout for path in paths.values())
    assert "Warning:" in result.stderr


@pytest.mark.parametrize("columns", [None, ["params.depth"]])
def test_postgres_index_answers_without_a_record_of_unknown_status(
    fstore: FileStore, pg_factory: Callable[[FileStore], Any],
    caplog: pytest.LogCaptureFixture, columns: list[str] | None,
) -> None:
    # (the index knows a run by its id: here also its file's name, as metalab writes it)
    path = os.path.join(fstore.get_working_directory(), "runs", "r090.json")
    with open(path, "wb") as fh:
        fh.write(BAD["bogus"])
    pg = pg_factory(fstore)
    assert pg._index_current("q:1")  # nothing pending: the index answers
    with caplog.at_level(logging.WARNING):
        found = pg.query_runs(None, "params.depth >= 0", columns=columns)
    assert [d["run_id"] for d in found] == [f"r{i:03d}" for i in range(20)]
    assert path in _said(caplog)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the bad row sorts among the first five
        first = pg.query_runs(None, "params.depth >= 0", columns=columns,
                              order_by="-duration_ms", limit=5)
    assert [d["run_id"] for d in first] == ["r019", "r018", "r017", "r016", "r015"]
    assert path in _said(caplog)
