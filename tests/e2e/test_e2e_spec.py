"""The storage spec's FileStore snippets that involve running, end to end.

Each snippet is executed as written (``exp`` is a small experiment with id
``my_exp:1.0``); checks then read the files on disk directly.  Absolute
``file://`` paths of the spec (``/shared/experiments``) are replaced by a
temporary folder: the code shape is unchanged.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from spec_ops import make_exp

import metalab


@pytest.fixture
def ns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    return {"exp": make_exp(), "metalab": metalab}


def run(ns: dict[str, Any], code: str) -> None:
    exec(compile(textwrap.dedent(code), "<spec snippet>", "exec"), ns)


def run_files(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_bytes()) for p in sorted((folder / "runs").glob("*.json"))]


def test_quick_start(ns: dict[str, Any], tmp_path: Path) -> None:
    run(ns, """
        import metalab
        # Simple path - creates FileStore at that location
        handle = metalab.run(exp, store="./experiments")
        # Results are stored under:
        wd = handle.store.get_working_directory() # ./experiments/<safe_experiment_id>/
    """)
    folder = tmp_path / "experiments" / "my_exp_1.0"
    assert Path(ns["wd"]) == folder
    docs = run_files(folder)
    assert len(docs) == 6 and {d["status"] for d in docs} == {"success"}
    meta = json.loads((folder / "_meta.json").read_bytes())
    assert meta["experiment_id"] == "my_exp:1.0"
    # every spec folder is there, with the spec's file names
    rid = docs[0]["run_id"]
    assert (folder / "artifacts" / rid / "_manifest.json").is_file()
    assert (folder / "logs" / f"{rid}_run.log").read_text().count("x=") == 1
    assert (folder / "results" / rid / "loss.json").is_file()
    assert len(list((folder / "experiments").glob("my_exp_1.0_*.json"))) == 1


def test_scoping_forms_are_equivalent(ns: dict[str, Any], tmp_path: Path) -> None:
    run(ns, """
        from metalab.store import FileStoreConfig
        # These are equivalent:
        h1 = metalab.run(exp, store="./experiments")
        h2 = metalab.run(exp, store=FileStoreConfig(root="./experiments"))
        # Data ends up in: ./experiments/my_exp_1.0/
    """)
    folder = tmp_path / "experiments" / "my_exp_1.0"
    assert [p.name for p in (tmp_path / "experiments").iterdir()] == ["my_exp_1.0"]
    assert len(run_files(folder)) == 6
    # the second call resumed: nothing ran twice, both submissions left a manifest
    assert ns["h2"].status.skipped == 6
    assert len(list((folder / "experiments").glob("*.json"))) == 2
    assert {d["attempt"] for d in run_files(folder)} == {1}


def test_file_uri_and_config(ns: dict[str, Any], tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "experiments"
    run(ns, f"""
        from metalab.store import FileStoreConfig
        # Path string - this is the collection root
        metalab.run(exp, store="./experiments")
        # file:// URI
        metalab.run(exp, store="file://{shared}")
        # Explicit config (equivalent)
        config = FileStoreConfig(root="./experiments")
        metalab.run(exp, store=config)
    """)
    a = run_files(tmp_path / "experiments" / "my_exp_1.0")
    b = run_files(shared / "my_exp_1.0")
    # same experiment, same ids, in both stores
    assert sorted(d["run_id"] for d in a) == sorted(d["run_id"] for d in b)


def test_browsing_a_collection(ns: dict[str, Any], tmp_path: Path) -> None:
    metalab.run(make_exp("my_exp", "1.0"), store="./experiments")
    metalab.run(make_exp("my_exp", "2.0"), store="./experiments")
    metalab.run(make_exp("other_exp", "1.0"), store="./experiments")
    run(ns, """
        from metalab import load_results
        from metalab.store import FileStoreConfig
        # Create an unscoped config (collection root)
        collection = FileStoreConfig(root="./experiments")
        # List all experiments in the collection
        experiments = collection.list_experiments()
        # Get config for a specific experiment
        config = collection.for_experiment("my_exp:1.0")
        results = load_results(config)
    """)
    assert ns["experiments"] == ["my_exp:1.0", "my_exp:2.0", "other_exp:1.0"]
    results = ns["results"]
    assert len(results) == 6
    assert {r.experiment_id for r in results} == {"my_exp:1.0"}


def test_loading_results(ns: dict[str, Any], tmp_path: Path) -> None:
    metalab.run(make_exp("my_exp", "1.0"), store="./experiments")
    metalab.run(make_exp("other_exp", "1.0"), store="./experiments")
    run(ns, """
        from metalab import load_results
        from metalab.store import FileStoreConfig
        # From path string
        results = load_results("./experiments", experiment_id="my_exp:1.0")
        # From config (using collection API)
        collection = FileStoreConfig(root="./experiments")
        results2 = load_results(collection.for_experiment("my_exp:1.0"))
        # Convert to DataFrame
        df = results.to_dataframe()
    """)
    results, results2, df = ns["results"], ns["results2"], ns["df"]
    assert len(results) == len(results2) == 6
    assert sorted(r.run_id for r in results) == sorted(r.run_id for r in results2)
    assert sorted(df["params.x"].tolist()) == [1, 1, 2, 2, 3, 3]
    assert sorted(df["y"].tolist()) == [1, 1, 4, 4, 9, 9]
    # the stepped metric is a series, not a scalar column
    assert "loss" not in df.columns
    run_ = results[0]
    assert run_.metric_series("loss") == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert run_.artifact("summary") == {"x": run_.params["x"]}
    assert f"x={run_.params['x']}" in run_.logs()


def test_rsynced_store_loads_everything(ns: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    metalab.run(make_exp(), store="./experiments")
    shutil.copytree(tmp_path / "experiments", tmp_path / "moved")
    shutil.rmtree(tmp_path / "experiments")
    results = metalab.load_results(str(tmp_path / "moved"), experiment_id="my_exp:1.0")
    assert len(results) == 6
    for r in results:
        assert r.artifact("summary") == {"x": r.params["x"]}
    # nothing stored refers to the old absolute path
    for p in (tmp_path / "moved").rglob("*.json"):
        assert str(tmp_path / "experiments") not in p.read_text()


def test_process_executor_matches_serial_ids(tmp_path: Path) -> None:
    serial = metalab.run(make_exp(), store=tmp_path / "a").result()
    with metalab.ProcessExecutor(max_workers=2) as ex:
        procs = metalab.run(make_exp(), store=tmp_path / "b", executor=ex).result()
    assert sorted(r.run_id for r in serial) == sorted(r.run_id for r in procs)
    assert {r.status.value for r in procs} == {"success"}
    assert os.listdir(tmp_path / "b") == ["my_exp_1.0"]
