"""The documentation stays true: CLI commands documented, ```python blocks run."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from metalab.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CODE_BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        path = f"{prefix} {name}"
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, path)
    return out


COMMANDS = _commands(cli, "metalab")


def test_there_are_commands_to_check() -> None:
    assert {"metalab store", "metalab store export", "metalab store list"} <= dict(COMMANDS).keys()


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_is_documented_and_has_help(path: str, command: click.Command) -> None:
    assert path in (DOCS / "cli.md").read_text(encoding="utf-8"), f"{path!r} missing in cli.md"
    assert (command.help or "").strip(), f"{path} has no help text"
    result = CliRunner().invoke(cli, [*path.split()[1:], "--help"])
    assert result.exit_code == 0
    assert command.help.strip().splitlines()[0] in result.output
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{path} {param.opts} has no help text"


def python_blocks(path: Path) -> list[str]:
    return [code for lang, code in CODE_BLOCK.findall(path.read_text(encoding="utf-8"))
            if lang == "python"]


DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
NOT_RUNNABLE = {"architecture.md"}  # contributor notes: signatures, not programs
RUNNABLE = [p for p in DOC_FILES if python_blocks(p) and p.name not in NOT_RUNNABLE]


def test_quickstart_has_runnable_blocks() -> None:
    assert DOCS / "quickstart.md" in RUNNABLE
    assert len(python_blocks(DOCS / "quickstart.md")) >= 3


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All ```python blocks of one page run in order, in one namespace, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for i, code in enumerate(python_blocks(path)):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{path.name} block {i} failed: {exc!r}\n{code}") from exc


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    title, sentence, block = text.split("\n\n", 3)[:3]
    assert title.startswith("# metalab")
    assert sentence.strip() and "\n" not in sentence.strip()
    lines = block.strip().splitlines()
    assert lines[0] == "```bash" and lines[-1] == "```"
    commands = [line.split("#")[0].strip() for line in lines[1:-1]]
    assert commands == ["./scripts/quickstart.sh", "./scripts/test.sh"]
    assert all("#" in line for line in lines[1:-1])  # each explained on its line


def test_doc_links_point_to_existing_files() -> None:
    for page in DOC_FILES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_scripts_are_executable() -> None:
    for script in ("scripts/setup.sh", "scripts/test.sh", "scripts/quickstart.sh", ".ci/run"):
        path = ROOT / script
        assert path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
        assert os.access(path, os.X_OK), f"{script} is not executable"
