"""How the group commit makes a group's records durable (metalab.store._group_commit).

``syncfs`` is used only where it is honest (Linux >= 5.8, which reports
write-back errors, on a known local filesystem); elsewhere each record is
fsynced through a descriptor that can flush it on every OS; the ``runs/``
folder is fsynced once per group after the renames; and the module imports
where libc cannot be loaded (Windows).  These tests fail when ``syncfs`` is
trusted on an old kernel or a FUSE mount, when a record is fsynced
read-only, when the renames of a group are not made durable (or cost one
folder fsync per run), or when importing the FileStore fails off Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

from metalab.model import RunRecord, Status
from metalab.store import FileStore, _group_commit

#: f_type of a FUSE mount (sshfs, s3fs, ...)
FUSE_SUPER_MAGIC = 0x65735546
EXT4_SUPER_MAGIC = 0xEF53


@pytest.fixture(autouse=True)
def _fresh_decisions():
    _group_commit.syncfs_trusted.cache_clear()
    yield
    _group_commit.syncfs_trusted.cache_clear()


def test_libc_is_only_loaded_on_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert _group_commit._load_libc() is None


def test_a_libc_that_cannot_be_loaded_leaves_syncfs_off(monkeypatch):
    def no_libc(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise TypeError("LoadLibrary() argument 1 must be str, not None")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert _group_commit._load_libc() is None


def test_the_file_store_imports_where_ctypes_cannot_load_libc():
    code = textwrap.dedent("""
        import ctypes, ctypes.util
        ctypes.util.find_library = lambda name: None
        real = ctypes.CDLL
        class WindowsLikeCDLL(real):
            def __init__(self, name, *a, **k):
                if name is None:
                    raise TypeError("LoadLibrary() argument 1 must be str, not None")
                super().__init__(name, *a, **k)
        ctypes.CDLL = WindowsLikeCDLL
        from metalab.store import FileStore, _group_commit
        print("syncfs", _group_commit._SYNCFS)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "syncfs None" in out.stdout


def test_a_record_is_fsynced_through_a_descriptor_open_for_writing(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    flags: list[int] = []
    real_open = os.open

    def spy_open(p, fl, *args):  # type: ignore[no-untyped-def]
        flags.append(fl)
        return real_open(p, fl, *args)

    monkeypatch.setattr(os, "open", spy_open)
    _group_commit._fsync_file(str(path))
    assert flags and flags[0] & os.O_ACCMODE == os.O_RDWR


@pytest.mark.parametrize(
    ("kernel", "fs", "trusted"),
    [
        ((6, 1), EXT4_SUPER_MAGIC, True),
        ((5, 8), 0x58465342, True),  # xfs
        ((5, 7), EXT4_SUPER_MAGIC, False),  # syncfs drops write-back errors
        ((4, 19), 0x9123683E, False),
        ((6, 1), FUSE_SUPER_MAGIC, False),  # syncfs does not reach the server
        ((6, 1), None, False),  # unknown
    ],
)
def test_syncfs_is_trusted_only_on_recent_kernels_and_local_filesystems(monkeypatch, kernel, fs, trusted):
    monkeypatch.setattr(_group_commit, "_SYNCFS", lambda fd: 0)
    monkeypatch.setattr(_group_commit, "_KERNEL", kernel)
    monkeypatch.setattr(_group_commit, "fs_type", lambda folder: fs)
    assert _group_commit.syncfs_trusted("/somewhere") is trusted


def test_the_decision_is_made_once_per_folder(monkeypatch):
    looked: list[str] = []
    monkeypatch.setattr(_group_commit, "_SYNCFS", lambda fd: 0)
    monkeypatch.setattr(_group_commit, "_KERNEL", (6, 1))
    monkeypatch.setattr(_group_commit, "fs_type", lambda folder: looked.append(folder) or EXT4_SUPER_MAGIC)
    for _ in range(5):
        assert _group_commit.syncfs_trusted("/a")
    assert looked == ["/a"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="statfs is read on Linux")
def test_the_filesystem_type_is_read(tmp_path):
    assert _group_commit.fs_type(str(tmp_path)) is not None
    assert _group_commit.fs_type(str(tmp_path / "missing")) is None


def test_an_untrusted_syncfs_fsyncs_each_record(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(_group_commit, "syncfs_trusted", lambda folder: False)
    monkeypatch.setattr(_group_commit, "_syncfs", lambda folder: calls.append("syncfs"))
    monkeypatch.setattr(_group_commit, "_fsync_file", lambda path: calls.append("fsync"))
    files = []
    for i in range(4):
        (tmp_path / f"f{i}").write_bytes(b"x")
        files.append(str(tmp_path / f"f{i}"))
    assert _group_commit.sync_files(files) == {}
    assert calls == ["fsync"] * 4


def test_the_runs_folder_is_fsynced_once_per_group_after_the_renames(tmp_path, monkeypatch):
    store = FileStore(tmp_path, "gc:1")
    staged = [store.stage_run_record(RunRecord(run_id=f"r{i}", experiment_id="gc:1",
                                               status=Status.SUCCESS)) for i in range(5)]
    runs = os.path.dirname(staged[0].target)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == runs:
            events.append("fsync runs/")

    def replace(src, dst):  # type: ignore[no-untyped-def]
        real_replace(src, dst)
        events.append("rename")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert store.commit_staged(staged) == [None] * 5
    assert events == ["rename"] * 5 + ["fsync runs/"]
    assert store.get_run_record("r3").status is Status.SUCCESS
