"""The change-log reader of ``store/_changes.py`` (shared by the followers of the logs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from metalab.store import FileStoreConfig
from metalab.store._changes import CHANGES_DIR, UNLOGGED, read_changes, stat_logs
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


def test_an_unlogged_marker_asks_for_a_listing_and_is_cleared(tmp_path: Path) -> None:
    store = _store(tmp_path)
    folder = store.get_working_directory()
    store.put_run_record(make_record("a", experiment_id="e:1"))
    first = read_changes(folder, {}, {})
    marker = os.path.join(folder, "runs", UNLOGGED)
    open(marker, "wb").close()
    got = read_changes(folder, first.states, first.dirs)
    assert got.reason == "a writer could not write its change log"
    assert not os.path.exists(marker)


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
