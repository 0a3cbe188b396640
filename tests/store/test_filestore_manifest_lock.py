"""Artifact manifests under concurrent writers (raw files checked, not the store's reads)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from metalab._errors import StoreError
from metalab.store import FileStoreConfig
from metalab.store import _file as file_module
from metalab.testing import make_record

EID = "locks:1"


def _writer(root: str, worker: int, count: int) -> None:
    store = FileStoreConfig(root=root, experiment_id=EID).connect()
    for i in range(count):
        store.put_artifact("r1", f"w{worker}-a{i}", f"{worker}:{i}".encode(), kind="file", format="bin")


def _manifest_names(root: Path) -> list[str]:
    raw = json.loads((root / "locks_1" / "artifacts" / "r1" / "_manifest.json").read_bytes())
    return sorted(e["name"] for e in raw)


def test_concurrent_processes_keep_every_manifest_entry(tmp_path: Path) -> None:
    FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect().put_run_record(
        make_record("r1", experiment_id=EID)
    )
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    expected = sorted(f"w{w}-a{i}" for w in range(4) for i in range(15))
    assert _manifest_names(tmp_path) == expected
    folder = tmp_path / "locks_1" / "artifacts" / "r1"
    assert not (folder / "_manifest.lock").exists()  # released, no trace left
    for name in expected:
        w, i = name[1:].split("-a")
        assert (folder / f"{name}.bin").read_bytes() == f"{w}:{i}".encode()


def test_a_stale_manifest_lock_is_taken_over(tmp_path: Path) -> None:
    store = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
    store.put_run_record(make_record("r1", experiment_id=EID))
    lock = tmp_path / "locks_1" / "artifacts" / "r1" / "_manifest.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("deadhost 1 x\n")
    old = time.time() - file_module.MANIFEST_LOCK_STALE_S - 5
    os.utime(lock, (old, old))
    store.put_artifact("r1", "model", b"w", kind="file", format="bin")
    assert _manifest_names(tmp_path) == ["model"]
    assert not lock.exists()


def test_a_held_manifest_lock_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_module, "MANIFEST_LOCK_WAIT_S", 0.2)
    store = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
    store.put_run_record(make_record("r1", experiment_id=EID))
    lock = tmp_path / "locks_1" / "artifacts" / "r1" / "_manifest.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("otherhost 2 y\n")  # fresh: a live writer
    with pytest.raises(StoreError, match=r"_manifest\.lock"):
        store.put_artifact("r1", "model", b"w", kind="file", format="bin")
    assert lock.exists()  # someone else's lock is left alone
    assert not (lock.parent / "_manifest.json").exists()
