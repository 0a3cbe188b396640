"""export_store: lossless, idempotent copies between stores."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metalab._errors import ConfigError, ScopeError
from metalab.store import FileStore, FileStoreConfig, TransferReport, export_store
from metalab.testing import make_record

EXPS = ("exp:1", "other:2")


def populate(root: Path, tmp_path: Path) -> None:
    src_file = tmp_path / "big.bin"
    src_file.write_bytes(b"\x00\x01" * 5000)
    for eid in EXPS:
        store = FileStore(str(root), experiment_id=eid)
        store.put_experiment_manifest(eid, {"experiment_id": eid, "v": 1},
                                      datetime(2026, 1, 1, 12, tzinfo=UTC))
        store.put_experiment_manifest(eid, {"experiment_id": eid, "v": 2})
        for i in range(3):
            rid = f"run{i}"
            a = store.put_artifact(rid, "model.v1", b"m" * i, kind="file", format="bin",
                                   metadata={"i": i})
            b = store.put_artifact(rid, "big", src_file, kind="file", format="bin")
            store.put_derived(rid, {"score": i})
            store.put_data(rid, "curve", {"kind": "series", "data": {"step": [0, 1],
                                                                     "value": [i, i + 1]}})
            store.append_log(rid, "run", f"hello {i}\n")
            store.append_log(rid, "stderr", "warn\n")
            store.put_run_record(make_record(rid, eid, artifacts=(a, b), params={"i": i}))


def snapshot(root: Path) -> dict[str, object]:
    """Every file under root; JSON made comparable across stores (only _meta's creation time differs)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or ".changes" in p.parts:  # change logs: per store, not data
            continue
        rel = str(p.relative_to(root))
        if p.name == "_meta.json":
            meta = json.loads(p.read_bytes())
            meta.pop("created_at")
            out[rel] = meta
        elif p.name == "_manifest.json" or rel.split("/")[1] == "runs":
            doc = json.loads(p.read_bytes())
            for a in doc if isinstance(doc, list) else doc["artifacts"]:
                assert len(a["artifact_id"]) == 32  # kept as is by transfers
            out[rel] = doc
        else:
            out[rel] = p.read_bytes()
    return out


def raw_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    populate(root, tmp_path)
    return root


def test_lossless_copy_of_a_collection(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dst"
    calls: list[tuple[int, int]] = []
    report = export_store(str(source), str(dest), progress=lambda d, t: calls.append((d, t)))
    assert report == TransferReport(experiments=2, runs=6, runs_skipped=0, derived=6, data=6,
                                    logs=12, artifacts=12, manifests=4)
    assert snapshot(dest) == snapshot(source)
    assert calls == [(i, 6) for i in range(1, 7)]
    # records point at the destination's own artifacts
    store = FileStore(str(dest), experiment_id="exp:1")
    rec = store.get_run_record("run2")
    assert rec is not None
    assert {a.artifact_id for a in rec.artifacts} == {a.artifact_id for a in store.list_artifacts("run2")}
    assert store.get_artifact_bytes("run2", "model.v1") == b"mm"
    assert [m["v"] for _t, m in store.list_experiment_manifests("exp:1")] == [1, 2]


def test_idempotent(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dst"
    export_store(str(source), str(dest))
    before = raw_bytes(dest)
    again = export_store(str(source), str(dest))
    assert again == TransferReport(experiments=2, runs_skipped=6)
    assert raw_bytes(dest) == before
    forced = export_store(str(source), str(dest), overwrite=True)
    assert forced.runs == 6 and forced.manifests == 0
    assert snapshot(dest) == snapshot(source)


def test_changed_run_replaced_whole(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dst"
    export_store(str(source), str(dest))
    src = FileStore(str(source), experiment_id="exp:1")
    src.append_log("run0", "run", "more\n")
    rec = src.get_run_record("run0")
    assert rec is not None
    src.put_run_record(rec.replace(notes="edited"))
    report = export_store(str(source), str(dest), experiment_id="exp:1")
    assert (report.runs, report.runs_skipped, report.experiments) == (1, 2, 1)
    dst = FileStore(str(dest), experiment_id="exp:1")
    assert dst.get_log("run0", "run") == "hello 0\nmore\n"  # replaced, not appended twice
    assert snapshot(dest) == snapshot(source)


def test_one_experiment_into_scoped_destination(source: Path, tmp_path: Path) -> None:
    dest_cfg = FileStoreConfig(root=str(tmp_path / "dst"), experiment_id="other:2")
    src_store = FileStore(str(source))
    report = export_store(src_store, dest_cfg, experiment_id="other:2")
    assert report.runs == 3
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["other_2"]
    with pytest.raises(ScopeError):
        export_store(str(source), dest_cfg)  # two experiments into one scope
    with pytest.raises(ScopeError):
        export_store(FileStoreConfig(root=str(source), experiment_id="exp:1"), str(tmp_path / "x"),
                     experiment_id="other:2")
    with pytest.raises(ConfigError, match="same store"):
        export_store(str(source), FileStoreConfig(root=str(source), experiment_id="exp:1"))


def test_copied_store_artifacts_still_load(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dst"
    export_store(str(source), str(dest))
    moved = tmp_path / "moved"
    shutil.copytree(dest, moved)
    shutil.rmtree(dest)
    store = FileStore(str(moved), experiment_id="other:2")
    rec = store.get_run_record("run1")
    assert rec is not None
    for desc in rec.artifacts:
        assert store.get_artifact_bytes("run1", desc.name) == (moved / "other_2" / desc.uri).read_bytes()


def test_corrupt_source_record_skipped(source: Path, tmp_path: Path, caplog) -> None:
    (source / "exp_1" / "runs" / "broken.json").write_bytes(b'{"run_id": ')
    report = export_store(str(source), str(tmp_path / "dst"), experiment_id="exp:1")
    assert report.runs == 3
    assert "broken.json" in caplog.text


def test_runs_written_through_a_collection_store_are_exported(tmp_path: Path) -> None:
    collection = FileStore(str(tmp_path / "src"))
    collection.put_run_record(make_record("r1", "direct:1"))
    collection.put_artifact("r1", "model", b"w", kind="file", format="bin")
    report = export_store(source=str(tmp_path / "src"), destination=str(tmp_path / "dst"))
    assert report.runs == 1
    raw = json.loads((tmp_path / "dst" / "direct_1" / "runs" / "r1.json").read_text())
    assert raw["run_id"] == "r1" and raw["experiment_id"] == "direct:1"
    assert (tmp_path / "dst" / "direct_1" / "artifacts" / "r1" / "model.bin").read_bytes() == b"w"
