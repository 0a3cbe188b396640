"""Context: lazy, copy-stable file fingerprints; resolve_context walks structures."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import pytest

from metalab._errors import CanonicalizationError, ValidationError
from metalab._internal import _json
from metalab.definition import DirPath, FilePath, context_fingerprint, resolve_context


@dataclasses.dataclass(frozen=True)
class Data:
    train: FilePath
    extra: dict[str, object]


def _write(path: Path, text: str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_construction_never_touches_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_stat = os.stat

    def spy(path: object, *a: object, **k: object) -> os.stat_result:
        calls.append(str(path))
        return real_stat(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", spy)
    f = FilePath(tmp_path / "later.csv")
    dp = DirPath(tmp_path / "later_dir")
    assert calls == []
    assert os.fspath(f) == str(tmp_path / "later.csv")
    monkeypatch.undo()
    # created after construction: the fingerprint sees it
    _write(tmp_path / "later.csv", "a,b\n")
    (tmp_path / "later_dir").mkdir()
    resolved, manifest = resolve_context({"f": f, "d": dp})
    assert resolved["f"]["name"] == "later.csv"
    assert set(manifest) == {"context.f", "context.d"}


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(ValidationError, match=r"nope\.bin"):
        resolve_context({"x": FilePath(missing)})
    with pytest.raises(ValidationError, match=r"nope\.bin"):
        context_fingerprint(FilePath(missing))
    with pytest.raises(ValidationError, match="not_a_dir"):
        context_fingerprint(DirPath(_write(tmp_path / "not_a_dir", "x")))


def test_fingerprint_cached_per_instance(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.txt", "one", mtime_ns=1_000_000_000)
    f = FilePath(p)
    first = context_fingerprint(f)
    _write(p, "three", mtime_ns=2_000_000_000)
    assert context_fingerprint(f) == first  # cached on the instance
    assert context_fingerprint(FilePath(p)) != first  # a new instance sees the change


def test_cheap_mode_survives_copy_preserving_metadata(tmp_path: Path) -> None:
    src = _write(tmp_path / "a" / "data.csv", "1,2,3\n", mtime_ns=1_600_000_000_000_000_000)
    dst_dir = tmp_path / "elsewhere"
    dst_dir.mkdir()
    dst = Path(shutil.copy2(src, dst_dir / "data.csv"))  # like cp -p / rsync -a: new inode
    assert os.stat(src).st_ino != os.stat(dst).st_ino
    assert context_fingerprint(FilePath(src)) == context_fingerprint(FilePath(dst))
    os.utime(dst, ns=(1, 1))  # touch changes the cheap fingerprint
    assert context_fingerprint(FilePath(src)) != context_fingerprint(FilePath(dst))


def test_content_mode_ignores_mtime_but_sees_content(tmp_path: Path) -> None:
    p = _write(tmp_path / "w.bin", "abc", mtime_ns=10**18)
    before = context_fingerprint(FilePath(p, hash_content=True))
    os.utime(p, ns=(5, 5))
    assert context_fingerprint(FilePath(p, hash_content=True)) == before
    _write(p, "abd", mtime_ns=10**18)  # same size and mtime, different bytes
    assert context_fingerprint(FilePath(p, hash_content=True)) != before
    assert context_fingerprint(FilePath(p)) != context_fingerprint(FilePath(p, hash_content=True))
    payload = FilePath(p, hash_content=True).fingerprint_payload()
    assert "sha256" in payload and "mtime_ns" not in payload


def test_dirpath_pattern_and_relative_names(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _write(root / "a.csv", "1", mtime_ns=10**18)
    _write(root / "b.txt", "2", mtime_ns=10**18)
    _write(root / "sub" / "c.csv", "3", mtime_ns=10**18)
    flat = DirPath(root, pattern="*.csv").fingerprint_payload()
    assert [f["name"] for f in flat["files"]] == ["a.csv"]
    deep = DirPath(root, pattern="**/*.csv").fingerprint_payload()
    assert [f["name"] for f in deep["files"]] == ["a.csv", "sub/c.csv"]
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, copy_function=shutil.copy2)
    assert context_fingerprint(DirPath(root, "**/*")) == context_fingerprint(DirPath(moved, "**/*"))
    _write(moved / "new.csv", "4")
    assert context_fingerprint(DirPath(root, "*.csv")) != context_fingerprint(
        DirPath(moved, "*.csv")
    )
    assert context_fingerprint(DirPath(root, "*.csv", hash_content=True)) == context_fingerprint(
        DirPath(root, "*.csv", hash_content=True)
    )


def test_markers_pickle_and_act_as_paths(tmp_path: Path) -> None:
    p = _write(tmp_path / "x.txt", "hello")
    f = FilePath(p, hash_content=True)
    context_fingerprint(f)
    back = pickle.loads(pickle.dumps(f))
    assert back == f and back.hash_content
    with open(back) as fh:
        assert fh.read() == "hello"
    d = DirPath(tmp_path, pattern="*.txt")
    assert pickle.loads(pickle.dumps(d)) == d
    assert Path(d) == tmp_path


def test_resolve_context_walks_structures(tmp_path: Path) -> None:
    p = _write(tmp_path / "train.csv", "x")
    ctx = {"data": Data(FilePath(p), {"files": [FilePath(p)], "k": (1, 2.5)}), "n": 3}
    resolved, manifest = resolve_context(ctx)
    assert set(manifest) == {"context.data.train", "context.data.extra.files[0]"}
    entry = manifest["context.data.train"]
    assert entry["type"] == "FilePath" and entry["path"] == str(p)
    assert len(entry["fingerprint"]) == 16
    assert resolved["data"]["extra"]["k"] == [1, 2.5]
    assert resolved["data"]["train"] == FilePath(p).fingerprint_payload()
    _json.loads(_json.dumps(resolved))  # JSON-safe
    _json.loads(_json.dumps(manifest))


def test_context_fingerprint_types_and_errors(tmp_path: Path) -> None:
    assert context_fingerprint({"a": 1}) != context_fingerprint({"a": 1.0})
    assert context_fingerprint({"a": 1}) == context_fingerprint({"a": 1})
    with pytest.raises(CanonicalizationError, match=r"context\.lr"):
        context_fingerprint({"lr": float("nan")})
    with pytest.raises(CanonicalizationError, match="object"):
        resolve_context({"x": object()})
