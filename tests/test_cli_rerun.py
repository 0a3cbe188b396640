"""`metalab runs show` with an id prefix and the provenance, and `metalab runs rerun`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import metalab
from metalab.cli import cli
from metalab.definition import Experiment, grid, seeds
from metalab.model import RunRecord, Status
from metalab.store import FileStoreConfig

OPS = '''
import os

CONTEXT = {"scale": 3}

def work(params, capture, context):
    if not os.path.exists(params["flag"]):
        raise ValueError("the flag file is missing")
    capture.metric("y", params["x"] * (context or {}).get("scale", 1))
'''


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
        ) -> Iterator[tuple[str, Path]]:
    """(module name, its folder): an importable module with a failing-until-flagged op."""
    name = "rerun_ops_" + request.node.name.replace("[", "_").replace("]", "_")
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(OPS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield name, folder
    sys.modules.pop(name, None)


def _launch(module_name: str, store: Path, flag: Path, context: object = None) -> list[str]:
    module = importlib.import_module(module_name)
    exp = Experiment(name="rr", version="1", context=context, operation=module.work,
                     params=grid(x=[1, 2], flag=[str(flag)]), seeds=seeds(0, 1))
    metalab.run(exp, store=str(store)).result()
    return sorted(metalab.load_results(str(store), experiment_id="rr:1").run_ids)


def _record(store: Path, run_id: str) -> RunRecord:
    with FileStoreConfig(root=str(store)).scoped("rr:1").connect() as scoped:
        record = scoped.get_run_record(run_id)
    assert record is not None
    return record


# ------------------------------------------------------------------ show
@pytest.fixture
def ids_root(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    for eid, ids in (("one:1", ["abc123", "abd456", "r1", "r10"]), ("two:1", ["ffe000"])):
        with FileStoreConfig(root=str(root)).scoped(eid).connect() as store:
            for rid in ids:
                store.put_run_record(RunRecord(run_id=rid, experiment_id=eid,
                                               status=Status.SUCCESS, params={"rid": rid}))
    return root


def test_show_accepts_a_unique_prefix(ids_root: Path) -> None:
    out = invoke("runs", "show", "abd", "-s", str(ids_root)).output
    assert out.startswith("run abd456  (one:1)") and "rid = abd456" in out
    assert invoke("runs", "show", "ffe", "-s", str(ids_root)).output.startswith("run ffe000")
    # an exact id wins over the longer ids it starts
    assert invoke("runs", "show", "r1", "-s", str(ids_root)).output.startswith("run r1  ")


def test_show_an_ambiguous_prefix_lists_the_candidates(ids_root: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "show", "ab", "-s", str(ids_root)])
    assert result.exit_code == 1
    assert "'ab' matches 2 runs: abc123 (one:1, success), abd456 (one:1, success)" in result.output
    assert "give more characters" in result.output


def test_show_without_a_match_says_no_run(ids_root: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "show", "zz", "-s", str(ids_root)])
    assert result.exit_code == 1
    assert "no run 'zz'" in result.output and "Traceback" not in result.output


def test_show_prints_the_provenance(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    flag = tmp_path / "flag"
    flag.touch()
    run_id = _launch(name, tmp_path / "store", flag)[0]
    out = invoke("runs", "show", run_id[:6], "-s", str(tmp_path / "store")).output
    assert "provenance:" in out
    assert f"  operation: {name}:work (code " in out
    assert "  ran on: serial" in out
    assert "  git: none (no git repository holds" in out
    assert "  packages: none besides the standard library" in out


# ----------------------------------------------------------------- rerun
def test_rerun_a_failed_run_keeps_its_id(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_ids = _launch(name, store, flag)
    assert {_record(store, r).status for r in run_ids} == {Status.FAILED}
    flag.touch()
    result = invoke("runs", "rerun", run_ids[0][:8], "-s", str(store))
    assert result.exit_code == 0, result.output
    assert f"run {run_ids[0]} ended success (attempt 2)" in result.output
    again = _record(store, run_ids[0])
    assert again.status is Status.SUCCESS and again.attempt == 2 and again.metrics["y"] in (1, 2)
    assert again.provenance.executor == "rerun" and again.provenance.git
    assert _record(store, run_ids[1]).status is Status.FAILED  # only that run
    assert sorted(metalab.load_results(str(store), experiment_id="rr:1").run_ids) == run_ids


def test_rerun_refuses_a_succeeded_run_without_force(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    flag.touch()
    run_id = _launch(name, store, flag)[0]
    result = CliRunner().invoke(cli, ["runs", "rerun", run_id, "-s", str(store)])
    assert result.exit_code == 1 and "succeeded; pass --force" in result.output
    assert _record(store, run_id).attempt == 1
    forced = invoke("runs", "rerun", run_id, "-s", str(store), "--force")
    assert forced.exit_code == 0 and _record(store, run_id).attempt == 2


def test_rerun_a_lost_run(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_id = _launch(name, store, flag)[0]
    old = datetime.now(UTC) - timedelta(days=1)
    with FileStoreConfig(root=str(store)).scoped("rr:1").connect() as scoped:
        record = scoped.get_run_record(run_id)
        assert record is not None
        scoped.put_run_record(record.replace(status=Status.RUNNING, error=None, started_at=old,
                                             heartbeat_at=old, finished_at=None))
    flag.touch()
    result = invoke("runs", "rerun", run_id, "-s", str(store))
    assert result.exit_code == 0 and "was lost" in result.output
    assert _record(store, run_id).status is Status.SUCCESS


def test_rerun_that_fails_again_exits_1(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_id = _launch(name, store, flag)[0]
    result = CliRunner().invoke(cli, ["runs", "rerun", run_id, "-s", str(store)])
    assert result.exit_code == 1
    assert "ended failed (attempt 2)" in result.output
    assert "error: ValueError: the flag file is missing" in result.output


def test_rerun_when_the_operation_cannot_be_imported(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, folder = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_id = _launch(name, store, flag)[0]
    (folder / f"{name}.py").unlink()
    sys.modules.pop(name, None)
    result = CliRunner().invoke(cli, ["runs", "rerun", run_id, "-s", str(store)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot rerun run {run_id}" in result.output and name in result.output
    assert _record(store, run_id).attempt == 1  # nothing was written


def test_rerun_needs_the_context_it_was_made_with(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_id = _launch(name, store, flag, context={"scale": 3})[0]
    flag.touch()
    missing = CliRunner().invoke(cli, ["runs", "rerun", run_id, "-s", str(store)])
    assert missing.exit_code == 1 and "--context package.module:name" in missing.output
    done = invoke("runs", "rerun", run_id, "-s", str(store), "--context", f"{name}:CONTEXT")
    assert done.exit_code == 0, done.output
    assert _record(store, run_id).metrics["y"] in (3, 6)
    other = CliRunner().invoke(cli, ["runs", "rerun", run_id, "-s", str(store), "--force",
                                     "--context", "json:__name__"])
    assert other.exit_code == 1 and "was made with" in other.output


def test_rerun_in_a_real_process(ops: tuple[str, Path], tmp_path: Path) -> None:
    name, folder = ops
    store, flag = tmp_path / "store", tmp_path / "flag"
    run_ids = _launch(name, store, flag)
    flag.touch()
    script = Path(sys.executable).with_name("metalab")
    done = subprocess.run([str(script), "runs", "rerun", run_ids[1], "-s", str(store)],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"run {run_ids[1]} ended success (attempt 2)" in done.stdout
    assert _record(store, run_ids[1]).status is Status.SUCCESS
    assert _record(store, run_ids[1]).provenance.pid != _record(store, run_ids[0]).provenance.pid


def test_provenance_lines_name_the_commit_and_what_is_unknown() -> None:
    from metalab.cli._runinfo import provenance_lines
    from metalab.model import Provenance

    commit = "0123456789abcdef0123456789abcdef01234567"
    lines = provenance_lines(Provenance(
        executor="thread", host="h1", git={"commit": commit, "branch": None, "dirty": None,
                                           "dirty_unknown": "git is not installed",
                                           "root": "/src"},
        packages={"numpy": "2.4.1", "attrs": "25.1.0"}))
    assert "ran on: thread, h1" in lines
    assert ("git: 0123456789ab (detached, dirty unknown: git is not installed) in /src"
            in lines)
    assert "packages: attrs 25.1.0, numpy 2.4.1" in lines
    clean = provenance_lines(Provenance(git={"commit": commit, "branch": "main", "dirty": True,
                                             "root": "/src"}))
    assert "git: 0123456789ab (branch main, dirty) in /src" in clean
    assert provenance_lines(Provenance())[-2:] == ["git: not recorded", "packages: not recorded"]
