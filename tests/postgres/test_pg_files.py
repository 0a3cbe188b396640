"""The files of a run read through a PostgresStore as through its FileStore: a log
opened as the file itself (the UI's live tail reads only its end), the same errors
for bad names, missing logs and links out of the store, and every reader method a
FileStore has of its own."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pg_helpers import records

import metalab
from metalab.store import FileStore, PostgresStore
from metalab.store._base import Store

#: the size of the large log: big enough that reading it whole would show
BIG_LOG_BYTES = 5 * 1000 * 1000
LINE = b"x" * 99 + b"\n"


def _big_log(store: PostgresStore, run_id: str, name: str) -> Path:
    """A log of about :data:`BIG_LOG_BYTES` whose last line is ``last line``."""
    store.append_log(run_id, name, "first line\n")  # (creates the logs folder)
    path = Path(store.file_store.log_path(run_id, name))
    with open(path, "ab") as fh:
        fh.write(LINE * (BIG_LOG_BYTES // len(LINE)) + b"last line\n")
    return path


@pytest.fixture
def no_whole_log_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read of a whole log (``get_log``, on either store) fails the test."""

    def refused(self: Any, run_id: str, name: str = "run") -> str | None:
        raise AssertionError(f"get_log({run_id!r}, {name!r}) read the whole log")

    monkeypatch.setattr(PostgresStore, "get_log", refused)
    monkeypatch.setattr(FileStore, "get_log", refused)


@pytest.mark.parametrize("scoped", [True, False], ids=["scoped", "collection"])
def test_open_log_is_the_log_file_and_its_tail_is_read_alone(
        make_store: Callable[..., PostgresStore], no_whole_log_reads: None, scoped: bool) -> None:
    writer = make_store("exp:1")
    rec = records("exp:1", 1)[0]
    writer.put_run_record(rec)
    path = _big_log(writer, rec.run_id, "big")
    store = make_store("exp:1" if scoped else None)
    fh = store.open_log(rec.run_id, "big")
    assert fh is not None
    with fh:
        assert not isinstance(fh, io.BytesIO) and fh.seekable()
        assert Path(f"/proc/self/fd/{fh.fileno()}").resolve() == path.resolve()
        fh.seek(-len(b"last line\n"), io.SEEK_END)
        assert fh.read() == b"last line\n"


def test_ui_log_tail_over_a_postgres_store_reads_only_the_end(
        make_store: Callable[..., PostgresStore], no_whole_log_reads: None) -> None:
    from starlette.testclient import TestClient

    from metalab.ui import create_app

    store = make_store(None)
    rec = records("exp:1", 1)[0]
    store.put_run_record(rec)
    _big_log(store, rec.run_id, "big")
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    r = client.get(f"/api/runs/{rec.run_id}/logs/big", params={"lines": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lines"] == ["x" * 99, "x" * 99, "last line"] and body["truncated"] is True


def test_open_log_missing_and_bad_names(make_store: Callable[..., PostgresStore]) -> None:
    store = make_store("exp:1")
    rec = records("exp:1", 1)[0]
    store.put_run_record(rec)
    assert store.open_log(rec.run_id, "never-written") is None
    store.append_log(rec.run_id, "run", "hello\n")
    fh = store.open_log(rec.run_id)
    assert fh is not None
    with fh:
        assert fh.read() == b"hello\n"
    for run_id, name in ((rec.run_id, "../../runs/x"), (rec.run_id, "a/b"),
                         ("../elsewhere", "run"), (rec.run_id, "")):
        with pytest.raises(metalab.InvalidNameError):
            store.open_log(run_id, name)


def test_open_log_refuses_links_out_of_the_store_and_folders(
        make_store: Callable[..., PostgresStore], tmp_path: Path) -> None:
    store = make_store("exp:1")
    rec = records("exp:1", 1)[0]
    store.put_run_record(rec)
    store.append_log(rec.run_id, "run", "inside\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside secret text")
    logs = Path(store.get_working_directory()) / "logs"
    (logs / f"{rec.run_id}_run.log").unlink()
    (logs / f"{rec.run_id}_run.log").symlink_to(outside)
    (logs / f"{rec.run_id}_dir.log").mkdir()
    for name in ("run", "dir"):
        with pytest.raises(metalab.NotFoundError, match="regular files inside the store"):
            store.open_log(rec.run_id, name)


def test_every_reader_method_of_a_filestore_is_delegated() -> None:
    """A method a FileStore has of its own (not Store's default) is PostgresStore's own
    too: a default would read differently (for example a whole log into memory)."""
    inherited = [
        name for name, value in vars(Store).items()
        if callable(value) and not name.startswith("__")
        and getattr(FileStore, name) is not value and getattr(PostgresStore, name) is value
    ]
    assert inherited == []
    flags = [n for n in dir(Store) if n.startswith("supports_")]
    assert {n: getattr(PostgresStore, n) for n in flags} == {n: getattr(FileStore, n)
                                                            for n in flags}
