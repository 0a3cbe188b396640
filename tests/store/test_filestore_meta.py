"""An experiment folder whose ``_meta.json`` is gone is still found, from its run records."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import metalab
from metalab.model import RunRecord, Status
from metalab.store import FileStore, FileStoreConfig, export_store
from metalab.store import _file as file_module


def _fill(root: Path, experiment_id: str, n: int) -> None:
    with FileStoreConfig(root=str(root)).scoped(experiment_id).connect() as store:
        for i in range(n):
            store.put_run_record(RunRecord(
                run_id=f"{experiment_id[0]}{i:015x}", experiment_id=experiment_id,
                status=Status.SUCCESS, params={"i": i}, metrics={"score": float(i)},
            ))


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    _fill(root, "alpha:1", 3)
    _fill(root, "beta:2", 1)
    (root / "alpha_1" / "_meta.json").unlink()
    return root


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_meta_is_rebuilt_from_the_records(
    collection: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), FileStore(str(collection)) as store:
        assert store.list_experiments() == ["alpha:1", "beta:2"]
    meta = json.loads((collection / "alpha_1" / "_meta.json").read_text())
    assert meta["experiment_id"] == "alpha:1"
    assert meta["format"] == "metalab-filestore"
    assert not [p for p in os.listdir(collection / "alpha_1") if p.startswith(".tmp")]
    said = _warnings(caplog)
    assert len(said) == 1 and str(collection / "alpha_1") in said[0] and "rebuilt" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING), FileStore(str(collection)) as store:
        assert store.list_experiments() == ["alpha:1", "beta:2"]
    assert _warnings(caplog) == []  # rebuilt once


def test_load_results_and_export_find_the_runs(collection: Path, tmp_path: Path) -> None:
    results = metalab.load_results(str(collection))
    assert sorted(r.experiment_id for r in results) == ["alpha:1"] * 3 + ["beta:2"]
    report = export_store(str(collection), str(tmp_path / "copy"))
    assert (report.experiments, report.runs) == (2, 4)
    with FileStore(str(tmp_path / "copy"), "alpha:1") as copy:
        assert len(list(copy.iter_run_documents())) == 3


def test_unwritable_folder_is_read_and_reported(
    collection: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(path: str, data: bytes) -> bool:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(file_module, "create_exclusive", refuse)
    with caplog.at_level(logging.WARNING), FileStore(str(collection)) as store:
        assert store.list_experiments() == ["alpha:1", "beta:2"]
        assert len(list(store.iter_run_documents("alpha:1"))) == 3
    assert not (collection / "alpha_1" / "_meta.json").exists()
    said = _warnings(caplog)
    assert said and all(str(collection / "alpha_1") in s for s in said)
    assert "could not be rebuilt" in said[0] and "Permission denied" in said[0]
    assert len(said) == 1  # once per store, not at every look


def test_records_of_several_experiments_are_reported_not_guessed(
    collection: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stray = RunRecord(run_id="g000", experiment_id="gamma:3", status=Status.SUCCESS)
    (collection / "alpha_1" / "runs" / "g000.json").write_bytes(
        json.dumps(stray.to_dict()).encode())
    with caplog.at_level(logging.WARNING), FileStore(str(collection)) as store:
        assert store.list_experiments() == ["beta:2"]
    assert not (collection / "alpha_1" / "_meta.json").exists()
    said = _warnings(caplog)
    assert len(said) == 1
    assert str(collection / "alpha_1") in said[0]
    assert "'alpha:1'" in said[0] and "'gamma:3'" in said[0]


def test_folders_without_records_are_not_experiments(
    collection: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (collection / "notes").mkdir()
    (collection / "empty" / "runs").mkdir(parents=True)
    with caplog.at_level(logging.WARNING), FileStore(str(collection)) as store:
        assert store.list_experiments() == ["alpha:1", "beta:2"]
    assert not (collection / "notes" / "_meta.json").exists()
    assert not (collection / "empty" / "_meta.json").exists()


def test_an_experiment_folder_opened_as_a_path_is_found_from_its_records(
    collection: Path,
) -> None:
    folder = collection / "alpha_1"
    with FileStore(str(folder)) as store:
        assert store.list_experiments() == ["alpha:1"]
        assert len(list(store.iter_run_documents("alpha:1"))) == 3
    results = metalab.load_results(str(folder))
    assert len(results) == 3
