"""Across versions: the committed store of ``tests/fixtures/compat_store`` keeps working.

It was written by an earlier metalab (see ``tests/fixtures/compat_store.py``).
This version must load it, give the same run ids for the same experiment and
skip every stored run on resume.  A failure means users' stores would rerun
(or no longer dedupe) after an upgrade.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import metalab

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _compat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_store", FIXTURES / "compat_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_store"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


compat = _compat()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A copy of the committed store (the tests never touch the original)."""
    copy = tmp_path / "store"
    shutil.copytree(compat.STORE, copy)
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_fixture_has_one_run_per_case() -> None:
    assert len(compat.RUN_IDS) == len(compat.CASES) == len(set(compat.RUN_IDS))
    stored = sorted(p.stem for p in (compat.STORE / "compat_1" / "runs").glob("*.json"))
    assert stored == sorted(compat.RUN_IDS)


def test_the_stored_runs_load(store: Path) -> None:
    results = metalab.load_results(store, experiment_id="compat:1")
    assert not results.problems
    assert sorted(r.run_id for r in results) == sorted(compat.RUN_IDS)
    by_label = {r.params["label"]: r for r in results}
    assert set(by_label) == {label for label, _ in compat.CASES}
    assert all(r.status == "success" for r in results)
    assert all(isinstance(r.metrics["draw"], float) for r in results)
    # what a JSON round trip makes of the values
    assert by_label["set of strings"].params["v"] == ["apple", "pear", "\u00e9"]
    assert by_label["enum"].params["v"] == 2
    assert by_label["dataclass"].params["v"] == {"x": 1, "y": 2.0}
    assert by_label["str unicode"].params["v"] == "\u00e9\U0001f600"


def test_this_version_computes_the_stored_run_ids(store: Path) -> None:
    exp = compat.make_experiment(store)
    specs = list(exp.iter_specs())
    assert [s.run_id for s in specs] == compat.RUN_IDS
    assert [exp.spec(i).run_id for i in range(exp.total_runs)] == compat.RUN_IDS
    manifests = sorted((store / "compat_1" / "experiments").glob("*.json"))
    first = metalab.store.FileStore(str(store / "compat_1")).get_experiment_manifest("compat:1")
    assert manifests and first is not None
    assert first["run_ids"] == compat.RUN_IDS
    assert first["context_fingerprint"] == exp.context_fingerprint
    stored: dict[str, Any] = {r.run_id: r for r in metalab.load_results(store, "compat:1")}
    for spec in specs:
        record = stored[spec.run_id]
        assert record.params["label"] == spec.params["label"]
        assert record.record.params_fingerprint == spec.params_fingerprint
        assert record.record.seed_fingerprint == spec.seed_fingerprint


def test_resume_skips_every_stored_run(store: Path) -> None:
    before = _files(store / "compat_1" / "runs")
    events: list[Any] = []
    handle = metalab.run(compat.make_experiment(store), store=str(store), on_event=events.append)
    handle.wait()
    status = handle.status
    assert (status.total, status.skipped, status.success, status.failed) == (
        len(compat.RUN_IDS), len(compat.RUN_IDS), 0, 0)
    assert {e.run_id for e in events if e.kind.value == "run_skipped"} == set(compat.RUN_IDS)
    assert _files(store / "compat_1" / "runs") == before  # no run was rewritten
