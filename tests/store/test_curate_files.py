"""Curation on disk: the annotation files themselves, kill -9 in the middle, two taggers at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from metalab.store import FileStore, FileStoreConfig
from metalab.testing import make_record

EXP = "cur:1"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStoreConfig(root=str(tmp_path / "coll"), experiment_id=EXP).connect()
    for i in range(3):
        s.put_run_record(make_record(f"r{i}", EXP, tags=("t0",)))
    return s


def _folder(store: FileStore) -> Path:
    return Path(store.get_working_directory())


def _ids(store: FileStore, where: str) -> list[str]:
    return sorted(d["run_id"] for d in store.query_runs(where=where))


def test_annotation_files_are_sidecars_and_records_stay_as_executed(store: FileStore) -> None:
    folder = _folder(store)
    before = (folder / "runs" / "r0.json").read_bytes()
    store.annotate_runs(["r0"], add_tags=["best"], remove_tags=["t0"], note="why")
    store.annotate_experiment(add_tags=["sgd"])
    assert (folder / "runs" / "r0.json").read_bytes() == before
    doc = json.loads((folder / "annotations" / "r0.json").read_text())
    assert doc["format"] == "metalab-annotations" and doc["version"] == 1
    assert (doc["tags"], doc["removed_tags"], doc["note"]) == (["best"], ["t0"], "why")
    assert doc["updated_at"].endswith("Z")
    exp_doc = json.loads((folder / "_annotations.json").read_text())
    assert exp_doc["tags"] == ["sgd"] and exp_doc["note"] is None
    assert sorted(os.listdir(folder / "annotations")) == ["r0.json"]  # no lock, no temp left
    # each change was logged for the catalog and the PostgreSQL catch-up
    log_text = "".join(p.read_text() for p in (folder / ".changes").glob("*.log"))
    assert log_text.count("r r0\n") == 3  # its write, its tags, the experiment's tags
    assert log_text.count("r r1\n") == 2


def test_a_change_the_logs_never_heard_of_is_found_by_the_listing(store: FileStore) -> None:
    """An annotation file copied in by hand (rsync, a restore) with no log line:
    the catalog's full listing sees it, its signature is part of the run's."""
    assert _ids(store, 'tags contains "restored"') == []
    folder = _folder(store)
    doc = {"format": "metalab-annotations", "version": 1, "tags": ["restored"],
           "removed_tags": [], "note": None, "updated_at": None}
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / "annotations" / "r2.json").write_text(json.dumps(doc))
    shutil.rmtree(folder / ".changes")  # the logs cannot vouch: the folder is listed
    assert _ids(store, 'tags contains "restored"') == ["r2"]


def test_an_unreadable_annotation_file_is_named_and_the_run_still_read(
        store: FileStore, caplog: pytest.LogCaptureFixture) -> None:
    store.annotate_runs(["r1"], add_tags=["x"])
    path = _folder(store) / "annotations" / "r1.json"
    path.write_text("{broken")
    docs = {d["run_id"]: d for d in store.iter_run_documents()}
    assert docs["r1"]["tags"] == ["t0"]
    assert str(path) in caplog.text
    with pytest.raises(Exception, match="not valid JSON"):
        store.annotate_runs(["r1"], add_tags=["y"])


def _in_child(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child; its exit code, or -signal if killed."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _kill_at_rename(n: int) -> None:
    """Make this process SIGKILL itself at its ``n``-th ``os.rename`` / ``os.replace``
    (1 = the first)."""
    seen = [0]

    def killing(real: Callable[[str, str], None]) -> Callable[[str, str], None]:
        def rename(src: str, dst: str) -> None:
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        return rename

    os.rename = killing(os.rename)  # type: ignore[assignment]
    os.replace = killing(os.replace)  # type: ignore[assignment]


@pytest.mark.parametrize("kill_at", [1, 2, 4])
def test_kill_9_during_delete_leaves_the_run_whole_or_gone(store: FileStore, kill_at: int
                                                           ) -> None:
    store.put_derived("r1", {"acc": 1})
    store.append_log("r1", "run", "hi\n")
    store.put_artifact("r1", "blob", b"xyz", kind="file", format="bin")
    store.annotate_runs(["r1"], add_tags=["doomed"])

    def delete() -> None:
        _kill_at_rename(kill_at)  # renames: record, derived, artifacts, logs, annotations
        store.config.connect().delete_run("r1")

    assert _in_child(delete) == -signal.SIGKILL
    again = store.config.connect()
    if kill_at == 1:  # killed before the record moved: all there
        assert again.get_run_record("r1") is not None
        assert again.get_derived("r1") == {"acc": 1} and again.list_logs("r1") == ["run"]
        assert _ids(again, 'tags contains "doomed"') == ["r1"]
    else:  # the record moved first: the run is gone for every reader
        assert again.get_run_record("r1") is None
        assert _ids(again, 'tags contains "doomed"') == []
        assert "r1" not in {d["run_id"] for d in again.iter_run_documents()}
    again.delete_run("r1")  # finishes the job
    folder = _folder(again)
    for leftover in ("runs/r1.json", "derived/r1.json", "artifacts/r1", "logs/r1_run.log",
                     "annotations/r1.json"):
        assert not (folder / leftover).exists(), leftover
    assert _ids(again, "status = 'success'") == ["r0", "r2"]
    again.put_run_record(make_record("r1", EXP))  # the run again starts clean
    assert again.get_run_record("r1").tags == () and again.list_artifacts("r1") == []


def test_kill_9_during_a_tag_leaves_before_or_after_and_no_stuck_lock(store: FileStore) -> None:
    def tag() -> None:
        _kill_at_rename(2)  # the first run's file is in place, the second's is not
        store.config.connect().annotate_runs(["r0", "r1"], add_tags=["half"])

    assert _in_child(tag) == -signal.SIGKILL
    again = store.config.connect()
    assert _ids(again, 'tags contains "half"') == ["r0"]  # r0 after, r1 before
    # the lock of the killed tagger is taken over at once; the same call completes it
    assert again.annotate_runs(["r0", "r1"], add_tags=["half"]) == ["r1"]
    assert _ids(again, 'tags contains "half"') == ["r0", "r1"]
    names = os.listdir(_folder(again) / "annotations")
    assert sorted(n for n in names if not n.startswith(".tmp-")) == ["r0.json", "r1.json"]


def _tagger(root: str, prefix: str, rounds: int) -> None:
    s = FileStoreConfig(root=root, experiment_id=EXP).connect()
    for i in range(rounds):
        s.annotate_runs(["r0", "r1", "r2"], add_tags=[f"{prefix}{i}"])
        s.annotate_experiment(add_tags=[f"{prefix}-exp{i}"])


def test_two_processes_tagging_at_once_lose_nothing(store: FileStore) -> None:
    root = store.config.root
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tagger, args=(root, p, 15)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    want = {f"{p}{i}" for p in "ab" for i in range(15)}
    for rid in ("r0", "r1", "r2"):
        assert set(store.get_annotations(rid).tags) == want
    assert set(store.get_experiment_annotations().tags) == {
        f"{p}-exp{i}" for p in "ab" for i in range(15)}
    assert _ids(store, 'tags contains "a14" and tags contains "b14" and tags contains "b-exp3"'
                ) == ["r0", "r1", "r2"]


def test_delete_experiment_is_one_rename_and_leaves_no_trash(tmp_path: Path,
                                                             store: FileStore) -> None:
    collection = FileStoreConfig(root=store.config.root).connect()
    other = FileStoreConfig(root=store.config.root, experiment_id="keep:1").connect()
    other.put_run_record(make_record("k", "keep:1"))
    assert collection.list_experiments() == ["cur:1", "keep:1"]
    collection.delete_experiment(EXP)
    assert collection.list_experiments() == ["keep:1"]
    assert sorted(os.listdir(store.config.root)) == ["keep_1"]
    assert [d["run_id"] for d in collection.iter_run_documents()] == ["k"]


def test_stale_trash_holding_a_link_or_a_stray_file_does_not_stop_deletions(
        store: FileStore, tmp_path: Path) -> None:
    from metalab.store._file_curate import TRASH_DIR, TRASH_STALE_S

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "precious.txt").write_text("keep me")
    trash = _folder(store) / TRASH_DIR
    (trash / "old.abc").mkdir(parents=True)
    (trash / "a-link").symlink_to(kept)
    (trash / "a-file").write_text("stray")
    old = os.stat(trash).st_mtime - 2 * TRASH_STALE_S
    for name in ("a-link", "a-file", "old.abc"):
        os.utime(trash / name, (old, old), follow_symlinks=False)
    store.delete_run("r0")
    store.delete_run("r1")  # (a second deletion finds the trash clean, not an error)
    assert not trash.exists()
    assert (kept / "precious.txt").read_text() == "keep me"  # (the link was never followed)
    assert _ids(store, "") == ["r2"]


def test_delete_run_moves_a_linked_log_without_following_it(store: FileStore,
                                                            tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.log"
    target.write_text("not the store's")
    store.append_log("r0", "run", "hello\n")
    logs = _folder(store) / "logs"
    (logs / "r0_linked.log").symlink_to(target)
    (logs / "r0_odd.log").mkdir()
    assert store.list_logs("r0") == ["run"]  # (only regular files are logs to read)
    store.delete_run("r0")
    assert sorted(p.name for p in logs.iterdir()) == []
    assert target.read_text() == "not the store's"
