"""The change-log reader of ``store/_changes.py`` (shared by the followers of the logs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from metalab.store import FileStoreConfig, _changes
from metalab.store._changes import CHANGES_DIR, UNLOGGED, folder_mtimes, read_changes, stat_logs
from metalab.testing import make_record


def _store(tmp_path: Path):
    return FileStoreConfig(root=str(tmp_path / "c"), experiment_id="e:1").connect()


def test_reads_past_its_offsets_and_leaves_a_torn_line(tmp_path: Path) -> None:
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    first = read_changes(folder, {}, {})
    assert first.reason is None and first.changed == {"runs": {"a"}, "derived": set()}
    store.put_run_record(make_record("b", experiment_id="e:1"))
    store.put_derived("a", {"acc": 1})
    (log,) = stat_logs(folder) or {}
    with open(os.path.join(folder, CHANGES_DIR, log), "ab") as fh:
        fh.write(b"r torn-without-newline")
    second = read_changes(folder, first.states, first.dirs)
    assert second.reason is None
    assert second.changed == {"runs": {"b"}, "derived": {"a"}}  # not "a" again, not the torn one
    assert read_changes(folder, second.states, second.dirs).changed == {"runs": set(),
                                                                         "derived": set()}


def test_a_replaced_log_cannot_vouch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    first = read_changes(folder, {}, {})
    (log,) = first.states
    path = os.path.join(folder, CHANGES_DIR, log)
    with open(path, "wb") as fh:
        fh.write(b"metalab-changes 1 another-id\nr a\nr b\nr c\n")
    got = read_changes(folder, first.states, first.dirs)
    assert got.reason == "a change log was replaced or truncated"
    assert got.changed == {"runs": set(), "derived": set()}
    assert got.states[log][0] == "another-id" and got.states[log][1] == os.path.getsize(path)


def test_an_unlogged_marker_asks_each_reader_for_one_listing(tmp_path: Path) -> None:
    """Two followers of the same logs (the catalog and a PostgreSQL catch-up): a marker
    event is seen by each of them, whatever order they read in, and once per event."""
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    first = read_changes(folder, {}, {})
    catalog, index = (first.states, first.dirs), (first.states, first.dirs)

    # a writer renames "x" into place but cannot append its log line
    store.put_run_record(make_record("x", experiment_id="e:1"))
    with open(os.path.join(folder, CHANGES_DIR, next(iter(first.states))), "r+b") as fh:
        fh.truncate(first.states[next(iter(first.states))][1])  # its line never made it
    _changes._unlogged(folder, "r", OSError("read-only log"))
    marker = os.path.join(folder, "runs", UNLOGGED)

    seen_by_catalog = read_changes(folder, *catalog)
    assert seen_by_catalog.reason == "a writer could not write its change log"
    catalog = (seen_by_catalog.states, seen_by_catalog.dirs)
    assert os.path.exists(marker)  # readers never remove it
    assert read_changes(folder, *catalog).reason is None  # once per event

    store.put_run_record(make_record("y", experiment_id="e:1"))  # a later, logged write
    seen_by_index = read_changes(folder, *index)
    assert seen_by_index.reason == "a writer could not write its change log"  # not lost

    _changes._unlogged(folder, "r", OSError("again"))  # a second event: a new byte
    assert read_changes(folder, *catalog).reason == "a writer could not write its change log"
    with open(marker, "rb") as fh:
        assert fh.read() == b"\n\n"


def test_marker_signature_is_taken_before_the_listing(tmp_path: Path) -> None:
    """The state a reader keeps after listing holds the marker as it was before the
    listing, so an event during the listing asks for one more."""
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    _changes._unlogged(folder, "r", OSError("x"))
    before = folder_mtimes(folder)
    _changes._unlogged(folder, "r", OSError("during the listing"))
    got = read_changes(folder, {}, {}, dirs=before)
    assert read_changes(folder, got.states, got.dirs).reason == (
        "a writer could not write its change log")


def test_no_change_folder_and_a_change_without_a_line(tmp_path: Path) -> None:
    root = tmp_path / "plain" / "runs"
    root.mkdir(parents=True)
    assert read_changes(str(root.parent), {}, {}).reason is not None  # no .changes folder
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    first = read_changes(folder, {}, {})
    time.sleep(0.05)  # the copied file gets a later folder mtime than the last line
    with open(os.path.join(folder, "runs", "copied.json"), "wb") as fh:
        fh.write(b"{}")
    assert read_changes(folder, first.states, first.dirs).reason == (
        "runs/ changed after the newest change log line")
