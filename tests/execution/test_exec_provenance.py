"""Run provenance: the git commit and dirty flag of the operation's repository, and the
versions of the packages the operation imports, collected once per launch."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.definition import Experiment, grid, seeds
from metalab.execution import _provenance
from metalab.execution._provenance import code_provenance, git_state

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

OPS_SOURCE = '''
import json
import pluggy

def work(params, capture):
    import orjson  # imported when the run executes: found in the source
    capture.metric("y", params["x"] * 2)
'''


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, timeout=30)
    return done.stdout.strip()


def _module(folder: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(OPS_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    return repo


def _commit(repo: Path) -> str:
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "ops")
    return _git(repo, "rev-parse", "HEAD")


def _launch(module: Any, store: Path, xs: tuple[int, ...] = (1, 2)) -> list[metalab.Run]:
    exp = Experiment(name="prov", version="1", context={}, operation=module.work,
                     params=grid(x=list(xs)), seeds=seeds(0, 1))
    metalab.run(exp, store=str(store)).result()
    return list(metalab.load_results(str(store), experiment_id="prov:1"))


@needs_git
def test_runs_record_the_commit_the_dirty_flag_and_the_packages(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(repo, "prov_ops_a", monkeypatch)
    head = _commit(repo)
    runs = _launch(module, tmp_path / "store")
    prov = runs[0].record.provenance
    assert prov.git == {"commit": head, "branch": "main", "dirty": False, "root": str(repo)}
    assert prov.packages == {"pluggy": importlib.metadata.version("pluggy"),
                             "orjson": importlib.metadata.version("orjson")}
    assert all(r.record.provenance.git["commit"] == head for r in runs)

    # an edited tracked file: the next launch is dirty; the records on disk say so
    (repo / "prov_ops_a.py").write_text(OPS_SOURCE + "\n# edited\n", encoding="utf-8")
    runs = _launch(module, tmp_path / "store", xs=(3,))
    newest = next(r for r in runs if r.params["x"] == 3)
    assert newest.record.provenance.git["dirty"] is True
    assert newest.record.to_dict()["provenance"]["git"]["commit"] == head


@needs_git
def test_commit_is_read_without_git_from_packed_refs_and_worktrees(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "a.py").write_text("x = 1\n", encoding="utf-8")
    head = _commit(repo)
    _git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    other = tmp_path / "wt"
    _git(repo, "worktree", "add", "-q", "-b", "side", str(other))
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # no git binary
    state = git_state(str(repo / "a.py"))
    assert state["commit"] == head and state["branch"] == "main"
    assert state["dirty"] is None and "git is not installed" in state["dirty_unknown"]
    side = git_state(str(other / "a.py"))
    assert side["commit"] == head and side["branch"] == "side" and side["root"] == str(other)


def test_missing_git_state_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path / "plain", "prov_ops_b", monkeypatch)
    git = code_provenance(module.work)["git"]
    assert list(git) == ["missing"] and "no git repository holds" in git["missing"]

    def interactive(params):  # a function whose source file cannot be found
        return None

    interactive.__code__ = interactive.__code__.replace(co_filename="<stdin>")
    interactive.__module__ = "__main__"
    assert "no source file" in code_provenance(interactive)["git"]["missing"]


def test_a_provenance_failure_never_fails_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path / "plain", "prov_ops_c", monkeypatch)

    def broken(source_file: str) -> dict[str, Any]:
        raise PermissionError("denied: .git/HEAD")

    monkeypatch.setattr(_provenance, "git_state", broken)
    runs = _launch(module, tmp_path / "store", xs=(1,))
    assert runs[0].status.value == "success"
    assert "denied: .git/HEAD" in runs[0].record.provenance.git["missing"]


def test_provenance_is_collected_once_per_launch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path / "plain", "prov_ops_d", monkeypatch)
    calls: list[str] = []
    real = _provenance.git_state

    def counting(source_file: str) -> dict[str, Any]:
        calls.append(source_file)
        return real(source_file)

    monkeypatch.setattr(_provenance, "git_state", counting)
    _launch(module, tmp_path / "store", xs=(1, 2, 3, 4))
    assert len(calls) == 1
    _launch(module, tmp_path / "store2", xs=(1, 2))
    assert len(calls) == 2  # a new launch looks again (the repository may have changed)


def test_the_process_payload_carries_the_launch_provenance(tmp_path: Path) -> None:
    from metalab.execution._worker import Job

    code = {"git": {"missing": "x"}, "packages": {"numpy": "1"}}
    job = Job(spec=None, operation=metalab.operation(_payload_op), context={},
              store=metalab.store.FileStoreConfig(root=str(tmp_path)).scoped("p:1").connect(),
              code_provenance=code)
    assert job.to_payload("process").code_provenance == code


def _payload_op(params):
    return None
