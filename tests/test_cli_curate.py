"""`metalab runs tag|untag|note|rm` and `metalab store rm`: curation from the command line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from metalab.cli import _curate, cli
from metalab.store import FileStoreConfig
from metalab.testing import make_record


@pytest.fixture
def root(tmp_path: Path) -> str:
    root = str(tmp_path / "experiments")
    for eid, n in (("alpha:1", 3), ("beta:2", 1)):
        store = FileStoreConfig(root=root, experiment_id=eid).connect()
        for i in range(n):
            store.put_run_record(make_record(f"{eid[0]}{i}", eid, params={"i": i}))
    return root


def invoke(*args: str, input: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def tagged(root: str, tag: str) -> list[str]:
    store = FileStoreConfig(root=root).connect()
    return sorted(d["run_id"] for d in store.query_runs(where=f'tags contains "{tag}"'))


def test_tag_and_untag_by_id_and_by_query(root: str) -> None:
    out = invoke("runs", "tag", "-s", root, "a0", "a1", "-t", "baseline", "-t", "keep")
    assert out.exit_code == 0 and "tagged 2 run(s) (2 changed)" in out.output
    assert tagged(root, "baseline") == ["a0", "a1"]
    out = invoke("runs", "untag", "-s", root, "-e", "alpha:1", "-w", "params.i >= 1",
                 "-t", "baseline")
    assert out.exit_code == 0 and "untagged 2 run(s) (1 changed)" in out.output  # (a2: none)
    assert tagged(root, "baseline") == ["a0"] and tagged(root, "keep") == ["a0", "a1"]
    # the listing shows them at once
    out = invoke("runs", "ls", "-s", root, "-w", 'tags contains "keep"', "-c", "tags",
                 "--format", "json")
    assert '"keep"' in out.output and "a1" in out.output


def test_experiment_wide_tags_reach_every_run(root: str) -> None:
    out = invoke("runs", "tag", "-s", root, "-e", "alpha:1", "--experiment-wide", "-t", "sgd")
    assert out.exit_code == 0 and "tagged experiment alpha:1" in out.output
    assert tagged(root, "sgd") == ["a0", "a1", "a2"]
    out = invoke("runs", "tag", "-s", root, "--experiment-wide", "-t", "sgd")
    assert out.exit_code == 1 and "name the experiment" in out.output
    out = invoke("runs", "tag", "-s", root, "-e", "alpha:1", "--experiment-wide", "a0",
                 "-t", "x")
    assert out.exit_code == 1 and "--experiment-wide" in out.output


def test_note_set_shown_and_cleared(root: str) -> None:
    assert invoke("runs", "note", "-s", root, "a2", "-m", "diverged").exit_code == 0
    assert "note: diverged" in invoke("runs", "show", "-s", root, "a2").output
    assert invoke("runs", "note", "-s", root, "a2", "--clear").exit_code == 0
    assert "note:" not in invoke("runs", "show", "-s", root, "a2").output
    out = invoke("runs", "note", "-s", root, "a2")
    assert out.exit_code == 1 and "-m TEXT, or --clear" in out.output


def test_bad_input_is_a_clear_error_and_changes_nothing(root: str) -> None:
    out = invoke("runs", "tag", "-s", root, "a0", "nope", "-t", "x")
    assert out.exit_code == 1 and "no run nope" in out.output and "Traceback" not in out.output
    out = invoke("runs", "tag", "-s", root, "-t", "x")
    assert out.exit_code == 1 and "give run ids or --where" in out.output
    out = invoke("runs", "tag", "-s", root, "a0", "-t", "")
    assert out.exit_code == 1 and "non-empty" in out.output
    assert tagged(root, "x") == []


def test_rm_refuses_without_a_terminal_unless_yes(root: str) -> None:
    out = invoke("runs", "rm", "-s", root, "a0")
    assert out.exit_code == 1
    assert "not a terminal; pass --yes" in out.output
    assert FileStoreConfig(root=root).connect().run_exists("a0")
    out = invoke("runs", "rm", "-s", root, "-w", "params.i >= 1", "-e", "alpha:1", "--yes")
    assert out.exit_code == 0 and "deleted 2 run(s)" in out.output
    store = FileStoreConfig(root=root).connect()
    assert sorted(d["run_id"] for d in store.iter_run_documents()) == ["a0", "b0"]


def test_rm_asks_on_a_terminal(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_curate, "_stdin_is_tty", lambda: True)
    out = invoke("runs", "rm", "-s", root, "a0", input="n\n")
    assert out.exit_code == 1 and "Delete 1 run(s) (a0)?" in out.output
    assert FileStoreConfig(root=root).connect().run_exists("a0")
    out = invoke("runs", "rm", "-s", root, "a0", input="y\n")
    assert out.exit_code == 0 and "deleted 1 run(s)" in out.output
    assert not FileStoreConfig(root=root).connect().run_exists("a0")


def test_store_rm_deletes_one_experiment(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = invoke("store", "rm", "-s", root, "-e", "alpha:1")
    assert out.exit_code == 1 and "pass --yes" in out.output
    monkeypatch.setattr(_curate, "_stdin_is_tty", lambda: True)
    out = invoke("store", "rm", "-s", root, "-e", "alpha:1", input="y\n")
    assert out.exit_code == 0, out.output
    assert "experiment alpha:1 and its 3 run(s)" in out.output
    assert FileStoreConfig(root=root).connect().list_experiments() == ["beta:2"]
    out = invoke("store", "rm", "-s", root, "-e", "alpha:1", "--yes")
    assert out.exit_code == 1 and "alpha:1" in out.output
    out = invoke("store", "rm", "-s", root, "--yes")
    assert out.exit_code == 1 and "-e ID" in out.output


def test_help_lists_the_curation_commands() -> None:
    runs_help = invoke("runs", "--help").output
    for name in ("tag", "untag", "note", "rm"):
        assert name in runs_help
    assert "rm" in invoke("store", "--help").output


def test_an_experiment_folder_with_its_id_reads_its_runs(root: str) -> None:
    """``-s ROOT/<experiment folder> -e ID`` means that folder (as load_results reads it),
    not a folder of the same name inside it; another id is still refused."""
    folder = str(Path(root) / "alpha_1")
    out = invoke("runs", "ls", "-s", folder, "-e", "alpha:1", "--format", "json")
    assert out.exit_code == 0, out.output
    assert all(rid in out.output for rid in ("a0", "a1", "a2"))
    out = invoke("runs", "tag", "-s", folder, "-e", "alpha:1", "a1", "-t", "picked")
    assert out.exit_code == 0 and "tagged 1 run(s)" in out.output
    assert tagged(root, "picked") == ["a1"]
    out = invoke("runs", "ls", "-s", folder, "-e", "beta:2")
    assert out.exit_code == 1 and "not in this store" in out.output
    out = invoke("runs", "rm", "-s", folder, "-e", "alpha:1", "a2", "--yes")
    assert out.exit_code == 0, out.output
    assert sorted(d["run_id"] for d in FileStoreConfig(root=root).connect().query_runs()) == [
        "a0", "a1", "b0"]
