"""The FileStore's files on disk (checked directly, not through the store)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from metalab._errors import CorruptRecordError, InvalidNameError, ScopeError
from metalab.store import FileStore, FileStoreConfig
from metalab.testing import make_record

EID = "my_exp:1.0"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()


def test_full_layout(store: FileStore, tmp_path: Path) -> None:
    rec = make_record("r1", experiment_id=EID)
    store.put_run_record(rec)
    store.put_derived("r1", {"acc": 1})
    store.put_artifact("r1", "model", b"weights", kind="file", format="bin")
    store.append_log("r1", "run", "hi\n")
    store.put_data("r1", "loss", {"kind": "series", "data": {"step": [0], "value": [1.0]}})
    ts = datetime(2026, 11, 26, 15, 40, 12, 123456, tzinfo=UTC)
    store.put_experiment_manifest(EID, {"experiment_id": EID}, ts)
    folder = tmp_path / "my_exp_1.0"
    from metalab.store._changes import log_file_name

    assert tree(tmp_path) == [
        f"my_exp_1.0/.changes/{log_file_name()}",  # hint for the query catalog, not data
        "my_exp_1.0/_meta.json",
        "my_exp_1.0/artifacts/r1/_manifest.json",
        "my_exp_1.0/artifacts/r1/model.bin",
        "my_exp_1.0/derived/r1.json",
        "my_exp_1.0/experiments/my_exp_1.0_20261126T154012123456Z.json",
        "my_exp_1.0/logs/r1_run.log",
        "my_exp_1.0/results/r1/loss.json",
        "my_exp_1.0/runs/r1.json",
    ]
    meta = json.loads((folder / "_meta.json").read_text())
    assert meta["format"] == "metalab-filestore"
    assert meta["layout_version"] == 1
    assert meta["experiment_id"] == EID
    assert meta["created_at"].endswith("Z")
    assert json.loads((folder / "runs" / "r1.json").read_text()) == rec.to_dict()
    assert json.loads((folder / "derived" / "r1.json").read_text()) == {"acc": 1}
    assert (folder / "logs" / "r1_run.log").read_text() == "hi\n"
    manifest = json.loads((folder / "artifacts" / "r1" / "_manifest.json").read_text())
    assert manifest == [{
        "name": "model", "kind": "file", "format": "bin", "uri": "artifacts/r1/model.bin",
        "content_hash": hashlib.sha256(b"weights").hexdigest(), "size_bytes": 7,
        "artifact_id": manifest[0]["artifact_id"], "metadata": {},
    }]
    assert len(manifest[0]["artifact_id"]) == 32
    data = json.loads((folder / "results" / "r1" / "loss.json").read_text())
    assert data == {"kind": "series", "data": {"step": [0], "value": [1.0]}, "dtype": None,
                    "shape": None, "metadata": {}}


def test_connect_and_reads_create_nothing(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    store = FileStoreConfig(root=str(root), experiment_id=EID).connect()
    assert store.list_run_records() == []
    assert store.get_run_record("r1") is None
    assert store.list_artifacts("r1") == []
    assert store.get_log("r1") is None
    assert store.list_experiments() == []
    assert store.list_experiment_manifests(EID) == []
    assert FileStoreConfig(root=str(root)).list_experiments() == []
    assert not root.exists()


def test_unscoped_store_sees_all_experiments(tmp_path: Path) -> None:
    for eid in ("a:1", "b:1"):
        FileStore(str(tmp_path), experiment_id=eid).put_run_record(make_record("r-" + eid[0], eid))
    loose = FileStore(str(tmp_path))
    loose.put_run_record(make_record("loose", "c:1"))
    # a collection store writes a new run into its experiment's folder
    assert json.loads((tmp_path / "c_1" / "_meta.json").read_text())["experiment_id"] == "c:1"
    assert json.loads((tmp_path / "c_1" / "runs" / "loose.json").read_text())["run_id"] == "loose"
    assert not (tmp_path / "runs").exists()
    assert sorted(d["run_id"] for d in loose.iter_run_documents()) == ["loose", "r-a", "r-b"]
    assert [d["run_id"] for d in loose.iter_run_documents("a:1")] == ["r-a"]
    assert [d["run_id"] for d in loose.iter_run_documents("c:1")] == ["loose"]
    assert loose.list_experiments() == ["a:1", "b:1", "c:1"]
    loose.put_derived("loose", {"d": 1})
    assert json.loads((tmp_path / "c_1" / "derived" / "loose.json").read_text()) == {"d": 1}
    # a collection store reads the runs of its experiments where they are
    loose.put_artifact("r-a", "x", b"1", kind="file", format="bin")
    assert (tmp_path / "a_1" / "artifacts" / "r-a" / "x.bin").read_bytes() == b"1"
    assert FileStore(str(tmp_path)).get_run_record("r-b") == make_record("r-b", "b:1")


def test_scoped_store_refuses_foreign_records_and_manifests(store: FileStore) -> None:
    with pytest.raises(ScopeError):
        store.put_run_record(make_record("r1", experiment_id="other:1"))
    with pytest.raises(ScopeError):
        store.put_experiment_manifest("other:1", {})


def test_manifests_never_overwritten(store: FileStore, tmp_path: Path) -> None:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        store.put_experiment_manifest(EID, {"i": i}, ts)
    files = sorted(os.listdir(tmp_path / "my_exp_1.0" / "experiments"))
    assert files == [
        "my_exp_1.0_20260101T000000000000Z.json",
        "my_exp_1.0_20260101T000000000001Z.json",
        "my_exp_1.0_20260101T000000000002Z.json",
    ]
    assert [m["i"] for _ts, m in store.list_experiment_manifests(EID)] == [0, 1, 2]


def test_temp_and_foreign_files_ignored(store: FileStore, tmp_path: Path) -> None:
    store.put_run_record(make_record("r1", experiment_id=EID))
    runs = tmp_path / "my_exp_1.0" / "runs"
    (runs / ".tmp-r2.json.abcd").write_bytes(b"{half")
    (runs / "notes.txt").write_text("x")
    assert [d["run_id"] for d in store.iter_run_documents()] == ["r1"]


def test_corrupt_and_non_object_records(store: FileStore, tmp_path: Path) -> None:
    store.put_run_record(make_record("r1", experiment_id=EID))
    runs = tmp_path / "my_exp_1.0" / "runs"
    (runs / "r2.json").write_bytes(b"")
    (runs / "r3.json").write_bytes(b"[1, 2]")
    errs: list[CorruptRecordError] = []
    assert [d["run_id"] for d in store.iter_run_documents(on_error=errs.append)] == ["r1"]
    assert sorted(os.path.basename(e.path or "") for e in errs) == ["r2.json", "r3.json"]


def test_default_on_error_warns(store: FileStore, tmp_path: Path, caplog) -> None:
    store.put_run_record(make_record("r1", experiment_id=EID))
    (tmp_path / "my_exp_1.0" / "runs" / "bad.json").write_bytes(b"{")
    assert len(store.list_run_records()) == 1
    assert "bad.json" in caplog.text


def test_artifact_names(store: FileStore, tmp_path: Path) -> None:
    d = store.put_artifact("r1", "v1.2.weights", b"w", kind="file", format="npz")
    assert d.uri == "artifacts/r1/v1.2.weights.npz"
    d = store.put_artifact("r1", "report.json", b"{}", kind="json", format="json")
    assert d.uri == "artifacts/r1/report.json"
    with pytest.raises(InvalidNameError, match="already holds"):
        store.put_artifact("r1", "report", b"{}", kind="json", format="json")
    with pytest.raises(InvalidNameError, match="reserved"):
        store.put_artifact("r1", "_x", b"", kind="file", format="bin")
    with pytest.raises(InvalidNameError):
        store.put_artifact("r1", "x", b"", kind="file", format="../evil")
    assert not (tmp_path / "evil").exists()


def test_logs_of_run_with_prefix_id(store: FileStore) -> None:
    store.put_run_record(make_record("a", experiment_id=EID))
    store.put_run_record(make_record("a_b", experiment_id=EID))
    store.append_log("a", "run", "1")
    store.append_log("a_b", "run", "2")
    assert store.list_logs("a") == ["run"]
    assert store.list_logs("a_b") == ["run"]
    store.delete_run("a")
    assert store.get_log("a_b", "run") == "2"


def test_store_identity(store: FileStore, tmp_path: Path) -> None:
    again = FileStore(str(tmp_path), experiment_id=EID)
    assert again == store and hash(again) == hash(store)
    assert pickle.loads(pickle.dumps(store)) == store
    assert store != FileStore(str(tmp_path))
    assert "my_exp:1.0" in repr(store)


def test_record_write_is_one_fsync_and_one_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record write does what a durable atomic write needs, and nothing more.

    (Its speed against the raw baseline is measured by bench/bench_filestore.py;
    here we pin the work per write: one fsync of the temp file, one rename, no
    lock file, no folder fsync.)
    """
    store = FileStore(str(tmp_path / "s"), experiment_id=EID)
    store.put_run_record(make_record("r0", experiment_id=EID))  # folders + _meta.json
    calls: list[str] = []
    real_fsync, real_replace, real_open = os.fsync, os.replace, os.open

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(f"replace {os.path.basename(dst)}")
        real_replace(src, dst)

    def open_(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            calls.append(f"create {os.path.basename(path)[:5]}")
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "open", open_)
    for i in range(1, 4):
        store.put_run_record(make_record(f"r{i}", experiment_id=EID))
    assert calls == [c for i in range(1, 4) for c in ("create .tmp-", "fsync", f"replace r{i}.json")]
