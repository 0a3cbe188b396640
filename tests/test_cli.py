"""The `metalab` command line: thin commands, clean errors, real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import metalab
from metalab.cli import cli
from metalab.cli._common import MetalabGroup
from metalab.model import RunRecord, Status


def _fill(root: Path, experiment_id: str, statuses: list[Status]) -> None:
    from metalab.store import FileStoreConfig

    with FileStoreConfig(root=str(root)).scoped(experiment_id).connect() as store:
        for i, status in enumerate(statuses):
            store.put_run_record(
                RunRecord(
                    run_id=f"{i:016x}",
                    experiment_id=experiment_id,
                    status=status,
                    params={"i": i},
                    metrics={"score": float(i)},
                )
            )
            store.append_log(f"{i:016x}", "run", f"hello from run {i}\n")


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    _fill(root, "alpha:1", [Status.SUCCESS, Status.SUCCESS, Status.FAILED])
    _fill(root, "beta:2", [Status.SUCCESS])
    return root


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert metalab.__version__ in result.output


def test_help_lists_the_store_commands() -> None:
    assert "store" in invoke("--help").output
    out = invoke("store", "--help").output
    for name in ("export", "import", "list"):
        assert name in out


def test_store_list_table(collection: Path) -> None:
    result = invoke("store", "list", "--store", str(collection))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["experiment", "total", "success", "failed"]
    alpha = next(line for line in lines if line.startswith("alpha:1"))
    assert alpha.split()[1:4] == ["3", "2", "1"]
    beta = next(line for line in lines if line.startswith("beta:2"))
    assert beta.split()[1:4] == ["1", "1", "0"]


def test_store_list_json(collection: Path) -> None:
    result = invoke("store", "list", "-s", str(collection), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == {
        "alpha:1": {"total": 3, "failed": 1, "success": 2},
        "beta:2": {"total": 1, "success": 1},
    }


def test_store_list_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("store", "list", "--store", str(tmp_path / "empty"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {}


@pytest.mark.parametrize("command", [
    ["store", "list", "--store"],
    ["store", "list", "--json", "--store"],
    ["runs", "ls", "--store"],
    ["runs", "ls", "-w", "params.i = 1", "--store"],
    ["runs", "show", "0000000000000000", "--store"],
    ["store", "reindex", "--store"],
    ["store", "export", "--to", "elsewhere", "--from"],
])
def test_a_store_path_that_names_nothing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*command, "./typo"])
    assert result.exit_code == 1, result.output
    assert "Error: no store at" in result.output and "typo" in result.output
    assert "the folder does not exist" in result.output
    assert "no runs match" not in result.output and "copied" not in result.output
    assert not (tmp_path / "typo").exists()  # nothing was created there
    assert not (tmp_path / "elsewhere").exists()


def test_runs_ls_of_an_experiment_the_store_lacks_is_an_error(collection: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "ls", "-s", str(collection), "-e", "alpah:1"])
    assert result.exit_code == 1, result.output
    assert "'alpah:1' is not in this store" in result.output
    assert "'alpha:1'" in result.output and "'beta:2'" in result.output


def test_store_list_and_export_with_a_deleted_meta_file(collection: Path, tmp_path: Path) -> None:
    (collection / "alpha_1" / "_meta.json").unlink()
    result = invoke("store", "list", "--store", str(collection), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha:1"] == {"total": 3, "failed": 1, "success": 2}
    assert "Warning:" in result.stderr and "alpha_1" in result.stderr  # the rebuild is told
    copied = invoke("store", "export", "--from", str(collection), "--to", str(tmp_path / "copy"))
    assert copied.exit_code == 0, copied.output
    assert "experiments=2" in copied.output and "runs=4" in copied.output


@pytest.mark.parametrize("command", ["export", "import"])
def test_store_transfer_copies_runs(collection: Path, tmp_path: Path, command: str) -> None:
    dest = tmp_path / "copy"
    result = invoke("store", command, "--from", str(collection), "--to", str(dest))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("copied:")
    assert "runs=4" in result.output.replace(" ", "")
    listed = json.loads(invoke("store", "list", "--store", str(dest), "--json").output)
    assert listed["alpha:1"] == {"total": 3, "failed": 1, "success": 2}
    from metalab.store import FileStoreConfig

    with FileStoreConfig(root=str(dest)).scoped("alpha:1").connect() as store:
        assert store.get_log(f"{0:016x}", "run") == "hello from run 0\n"


def test_store_export_one_experiment(collection: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    result = invoke(
        "store", "export", "-f", str(collection), "-t", str(dest), "--experiment", "beta:2"
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke("store", "list", "--store", str(dest), "--json").output)
    assert list(listed) == ["beta:2"]


def test_store_export_twice_skips_unless_overwrite(collection: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    first = invoke("store", "export", "-f", str(collection), "-t", str(dest))
    again = invoke("store", "export", "-f", str(collection), "-t", str(dest))
    forced = invoke("store", "export", "-f", str(collection), "-t", str(dest), "--overwrite")
    assert first.output != again.output  # the second run reports skipped runs
    assert "runs=4" in forced.output.replace(" ", "")


def _failing_step(n: int) -> None:
    raise ValueError(f"step {n} diverged")


def test_runs_show_prints_the_traceback_of_a_failed_run(tmp_path: Path) -> None:
    from metalab.model import ErrorInfo
    from metalab.store import FileStoreConfig

    try:
        _failing_step(7)
    except ValueError as exc:
        error = ErrorInfo.from_exception(exc)
    root = tmp_path / "experiments"
    with FileStoreConfig(root=str(root)).scoped("crash:1").connect() as store:
        store.put_run_record(RunRecord(run_id="r1", experiment_id="crash:1",
                                       status=Status.FAILED, error=error))
    result = invoke("runs", "show", "r1", "-s", str(root))
    assert result.exit_code == 0, result.output
    assert "error: ValueError: step 7 diverged" in result.output
    assert "Traceback (most recent call last):" in result.output
    assert "in _failing_step" in result.output
    assert 'raise ValueError(f"step {n} diverged")' in result.output


def test_missing_required_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["store", "export", "--to", "x"])
    assert result.exit_code == 2
    assert "--from" in result.output


def test_library_error_becomes_a_clean_message() -> None:
    result = CliRunner().invoke(cli, ["store", "list", "--store", "nosuchscheme://host/x"])
    assert result.exit_code == 1
    assert result.output.startswith("Error:")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_error_messages_hide_passwords() -> None:
    @click.group(cls=MetalabGroup)
    def root() -> None:
        pass

    @root.command()
    def boom() -> None:
        raise metalab.IndexUnavailableError(
            "cannot reach postgresql://alice:s3cret@db.example:5432/lab; is it running?"
        )

    result = CliRunner().invoke(root, ["boom"])
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "postgresql://alice:***@db.example:5432/lab" in result.output


def _script() -> str:
    script = Path(sys.executable).with_name("metalab")
    assert script.exists(), "install the package: pip install -e '.[dev]'"
    return str(script)


def test_installed_script_runs(collection: Path) -> None:
    out = subprocess.run(
        [_script(), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert metalab.__version__ in out.stdout
    listed = subprocess.run(
        [_script(), "store", "list", "--store", str(collection), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(listed.stdout)["beta:2"]["total"] == 1
    bad = subprocess.run(
        [_script(), "store", "list", "--store", "nosuchscheme://x"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 1 and "Error:" in bad.stderr and "Traceback" not in bad.stderr


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from metalab.cli._common import progress_callback

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress_callback("x") as cb:
        assert cb is None  # pytest captures stderr: not a terminal
    monkeypatch.setattr(sys, "stderr", Tty())
    with progress_callback("Copying runs") as cb:
        assert cb is not None
        cb(1, 4)
        cb(4, 4)
