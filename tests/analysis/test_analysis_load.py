"""load_results: what it opens, how it scopes, and how it survives bad files."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest
from analysis_support import EXP, make_record

from metalab._errors import CorruptRecordError, NotFoundError, ScopeError, ValidationError
from metalab.analysis import Results, load_results
from metalab.store import FileStoreConfig, Store


def _fill(store: Store, n: int, prefix: str = "r") -> None:
    for i in range(n):
        store.put_run_record(
            make_record(f"{prefix}{i}", experiment_id=store.experiment_id or EXP, params={"i": i})
        )


def test_path_with_experiment_id_finds_that_experiment(root: Any, file_store: Any) -> None:
    _fill(file_store(EXP), 3)
    _fill(file_store("other:2"), 2, prefix="o")
    results = load_results(str(root), experiment_id=EXP)
    assert len(results) == 3
    assert results.experiments == [EXP]
    assert results.store.experiment_id == EXP
    assert len(load_results(root, experiment_id="other:2")) == 2  # os.PathLike too


def test_single_experiment_collection_is_scoped_automatically(root: Any, file_store: Any) -> None:
    _fill(file_store(EXP), 4)
    results = load_results(str(root))
    assert len(results) == 4
    assert results.store.experiment_id == EXP


def test_path_to_the_experiment_folder_itself(root: Any, file_store: Any) -> None:
    store = file_store(EXP)
    _fill(store, 2)
    store.put_artifact("r0", "blob", b"hello", kind="text", format="txt")
    folder = store.get_working_directory()
    assert os.path.isdir(os.path.join(folder, "runs"))
    results = load_results(folder)
    assert sorted(results.run_ids) == ["r0", "r1"]
    assert results["r0"].artifact("blob") == "hello"
    assert len(load_results(folder, experiment_id=EXP)) == 2


def test_several_experiments_are_all_loaded(root: Any, file_store: Any) -> None:
    a, b = file_store(EXP), file_store("other:2")
    _fill(a, 2, prefix="a")
    _fill(b, 3, prefix="b")
    b.put_artifact("b1", "note", b"from b", kind="text", format="txt")
    results = load_results(str(root))
    assert len(results) == 5
    assert results.experiments == [EXP, "other:2"]
    assert "2 experiments" in repr(results)
    assert results["b1"].artifact("note") == "from b"
    assert len(results.filter(i=1)) == 2  # one per experiment


def test_config_and_store_inputs(root: Any, file_store: Any) -> None:
    _fill(file_store(EXP), 2)
    _fill(file_store("other:2"), 1, prefix="o")
    collection = FileStoreConfig(root=str(root))
    assert len(load_results(collection.for_experiment(EXP))) == 2
    assert len(load_results(collection, experiment_id="other:2")) == 1
    assert len(load_results(collection)) == 3
    unscoped = collection.connect()
    assert len(load_results(unscoped, experiment_id=EXP)) == 2
    scoped = file_store(EXP)
    assert len(load_results(scoped)) == 2
    with pytest.raises(ScopeError):
        load_results(scoped, experiment_id="other:2")
    with pytest.raises(ScopeError):
        load_results(collection.for_experiment(EXP), experiment_id="other:2")


def test_missing_path_and_unknown_experiment_say_what_exists(root: Any, file_store: Any) -> None:
    _fill(file_store(EXP), 1)
    with pytest.raises(NotFoundError, match="does not exist"):
        load_results(str(root / "typo"))
    with pytest.raises(NotFoundError, match=r"my_exp:1\.0") as info:
        load_results(str(root), experiment_id="my_exp:1.1")
    assert "Did you mean" in str(info.value)
    with pytest.raises(ValidationError):
        load_results(42)  # type: ignore[arg-type]


def test_corrupt_run_file_is_skipped_and_reported(root: Any, file_store: Any) -> None:
    store = file_store(EXP)
    _fill(store, 3)
    bad = os.path.join(store.get_working_directory(), "runs", "broken.json")
    with open(bad, "w") as fh:
        fh.write('{"run_id": "broken", "status": "succ')  # truncated write
    with pytest.warns(UserWarning, match="broken.json"):
        results = load_results(str(root), experiment_id=EXP)
    assert len(results) == 3
    assert [p.path for p in results.problems] == [bad]
    assert isinstance(results.problems[0], CorruptRecordError)
    assert "unreadable" in repr(results)


def test_invalid_record_document_is_reported_with_its_file(root: Any, file_store: Any) -> None:
    store = file_store(EXP)
    _fill(store, 2)
    odd = os.path.join(store.get_working_directory(), "runs", "odd.json")
    with open(odd, "w") as fh:
        json.dump({"run_id": "odd", "experiment_id": EXP, "status": "exploded"}, fh)
    seen: list[CorruptRecordError] = []
    results = load_results(str(root), on_error=seen.append)  # no warning with a callback
    assert len(results) == 2
    assert [e.path for e in seen] == [odd]
    assert results.problems[0].path == odd


def test_newer_schema_is_reported_not_misread(file_store: Any) -> None:
    store = file_store(EXP)
    _fill(store, 1)
    path = os.path.join(store.get_working_directory(), "runs", "future.json")
    doc = make_record("future").to_dict() | {"schema_version": 99}
    with open(path, "w") as fh:
        json.dump(doc, fh)
    seen: list[CorruptRecordError] = []
    results = load_results(store, on_error=seen.append)
    assert len(results) == 1
    assert "upgrade metalab" in str(seen[0])


def test_copied_store_still_loads_artifacts(tmp_path: Any, root: Any, file_store: Any) -> None:
    store = file_store(EXP)
    _fill(store, 1)
    store.put_artifact("r0", "weights", json.dumps([1, 2]).encode(), kind="json", format="json")
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    run = load_results(str(moved), experiment_id=EXP)["r0"]
    assert run.artifact("weights") == [1, 2]
    assert run.artifact_path("weights").startswith(os.path.realpath(moved))


def test_results_constructor_validates_documents(memory_store: Any) -> None:
    good = make_record("g").to_dict()
    results = Results(memory_store, [good, {"run_id": 3}, "junk"])  # type: ignore[list-item]
    assert results.run_ids == ["g"]
    assert len(results.problems) == 2
