"""The fault scoreboard: each fault test records one line, printed at the end of the run.

A line reads ``NAME: tried N / lost L / corrupt C / misreported M`` (plus what
else the test measured); docs/reliability.md shows the figures of a CI run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_LINES: list[str] = []


@pytest.fixture
def scoreboard() -> Iterator[list[str]]:
    """Append scoreboard lines to the returned list; they are printed after the tests."""
    lines: list[str] = []
    yield lines
    _LINES.extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fault scoreboard")
        for line in _LINES:
            terminalreporter.write_line(line)
