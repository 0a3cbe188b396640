"""Helpers shared by the CLI commands: error translation, progress display, exact output."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from metalab._errors import MetalabError
from metalab._internal import _json
from metalab._internal._redact import redact

__all__ = ["MetalabGroup", "error_message", "exact_cell", "json_ready", "one_run_options",
           "open_store", "progress_callback"]

F = TypeVar("F", bound=Callable[..., Any])


def error_message(exc: BaseException) -> str:
    """The user-facing message for a library error, with passwords removed."""
    text = str(exc) or type(exc).__name__
    return redact(text)


def open_store(locator: str, experiment_id: str | None) -> Any:
    """The store ``locator`` names, scoped to ``experiment_id`` if given.

    Raises NotFoundError for a folder that does not exist or an experiment
    the store does not hold (a typo must not read as "no runs").
    """
    from metalab.store import make_store, narrow_to_experiment

    store = make_store(locator, must_exist=True)
    if experiment_id is None:
        return store
    try:
        scoped = narrow_to_experiment(store, experiment_id)
    except BaseException:
        store.close()
        raise
    if scoped is not store:
        store.close()  # (the scoped store has connections of its own)
    return scoped


def one_run_options(command: F) -> F:
    """The argument and options of a command about one run: ``RUN_ID_OR_PREFIX``
    (resolved with :func:`metalab.cli._runinfo.find_run`), ``--store`` and ``--experiment``."""
    command = click.option(
        "--experiment", "-e", "experiment_id", default=None, metavar="ID",
        help="The run's experiment (needed only if the id prefix matches runs of several).",
    )(command)
    command = click.option("--store", "-s", "locator", required=True, metavar="LOCATOR",
                           help="The store: a path, file:// or postgresql:// locator.")(command)
    return click.argument("run_id", metavar="RUN_ID_OR_PREFIX")(command)


class MetalabGroup(click.Group):
    """A click group that turns library errors into clean CLI errors.

    A :class:`~metalab.MetalabError` (or an ``OSError`` such as a permission
    problem) raised by any sub-command becomes a :class:`click.ClickException`
    carrying the redacted message: the user sees ``Error: <message>`` and exit
    code 1, never a traceback or a password.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _warnings_to_stderr():
                return super().invoke(ctx)
        except (MetalabError, OSError) as exc:
            raise click.ClickException(error_message(exc)) from None


class _StderrHandler(logging.Handler):
    """Prints metalab's warnings (e.g. a file skipped by a query) as ``Warning: ...`` on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"Warning: {redact(record.getMessage())}", err=True)
        except Exception:  # a warning must never break the command
            self.handleError(record)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """While a command runs, show the library's logged warnings on stderr (once,
    however deeply command groups nest); the output on stdout stays clean."""
    logger = logging.getLogger("metalab")
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        yield
        return
    handler = _StderrHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextmanager
def progress_callback(description: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """Yield a ``callback(done, total)`` drawing a rich progress bar on stderr.

    Yields ``None`` when stderr is not a terminal (pipes, CI logs), so nothing
    but the final summary is printed there.  rich is imported only when a bar
    is actually shown.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# ------------------------------------------------------------ exact output
# ``--format csv`` and ``--format json`` write numbers so that reading them back
# gives the very same values: floats as their shortest round-trip text (repr),
# and NaN / infinities as the texts the stores hold ("NaN", "Infinity",
# "-Infinity", see metalab._internal._json), which Python's float(), pandas'
# read_csv and JavaScript's Number() read as those numbers.  Only the human
# table rounds.


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by its stored text.

    JSON has no NaN or infinity (the encoder would write ``null``); other
    values are returned as they are.
    """
    if isinstance(value, float):
        return _json.encode_number(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def exact_cell(value: Any) -> str:
    """A CSV cell holding ``value`` exactly (empty for None; lists and objects as JSON)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(_json.encode_number(value))
    if isinstance(value, str):
        return value
    return _json.dumps(json_ready(value)).decode()
