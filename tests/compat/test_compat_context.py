"""The original metalab's context helpers (context_spec, file_hash, dir_hash) and run.experiment."""

from __future__ import annotations

import dataclasses
import shutil

import compat_ops
import pytest

import metalab
from metalab import ValidationError


@metalab.context_spec
class DataContext:
    data: metalab.FilePath
    label: str = "train"


@metalab.context_spec(frozen=True)
class Plain:
    n: int


def test_context_spec_is_a_frozen_dataclass_whose_fingerprint_is_the_runners(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("1,2\n")
    ctx = DataContext(metalab.FilePath(f))
    assert dataclasses.is_dataclass(ctx)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.label = "other"  # type: ignore[misc]
    exp = metalab.Experiment(name="ctx", version="1", context=ctx, operation=compat_ops.record_params,
                             params=metalab.grid(x=[1]), seeds=metalab.seeds(0))
    assert ctx.fingerprint == exp.context_fingerprint
    assert Plain(1).fingerprint == Plain(1).fingerprint != Plain(2).fingerprint
    with pytest.raises(ValidationError, match="fingerprint"):
        metalab.context_spec(type("Bad", (), {"fingerprint": 1}))


def test_file_and_dir_hashes_follow_content_not_place(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "x.txt").write_text("hello")
    (a / "sub").mkdir()
    (a / "sub" / "y.bin").write_bytes(b"\x00\x01")
    h = metalab.file_hash(a / "x.txt")
    assert len(h) == 16 and h == metalab.file_hash(str(a / "x.txt"))
    assert metalab.file_hash(a / "x.txt", algorithm="md5") != h
    d = metalab.dir_hash(a)
    shutil.copytree(a, tmp_path / "b")
    assert metalab.dir_hash(tmp_path / "b") == d  # a copy elsewhere hashes the same
    assert metalab.dir_hash(a, pattern="*.txt") != d
    (tmp_path / "b" / "x.txt").write_text("hellO")
    assert metalab.dir_hash(tmp_path / "b") != d
    with pytest.raises(ValidationError, match="no such file"):
        metalab.file_hash(tmp_path / "missing")
    with pytest.raises(ValidationError, match="no such folder"):
        metalab.dir_hash(tmp_path / "missing")
    with pytest.raises(ValidationError, match="algorithm"):
        metalab.file_hash(a / "x.txt", algorithm="nope")


def test_run_experiment_reads_the_manifest(tmp_path):
    exp = metalab.Experiment(name="info", version="2", context={}, operation=compat_ops.record_params,
                             params=metalab.grid(x=[1]), seeds=metalab.seeds(0),
                             description="about", tags=["a"], metadata={"group": "g1"})
    run = metalab.run(exp, store=tmp_path).result()[0]
    info = run.experiment
    assert isinstance(info, metalab.ExperimentInfo)
    assert (info.experiment_id, info.name, info.version, info.description) == (
        "info:2", "info", "2", "about")
    assert info.metadata == {"group": "g1"} and info.tags == ("a",)
    assert info.manifest["total_runs"] == 1
    bare = metalab.ExperimentInfo.from_experiment_id("x:1")
    assert (bare.name, bare.version, bare.manifest) == ("x", "1", None)
