"""``metalab runs rerun``: execute one failed (or lost) run again, under the same run id."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from metalab.cli._common import one_run_options, open_store
from metalab.cli._runinfo import find_run

__all__ = ["rerun_cmd"]

#: exit status when the rerun itself ended failed or cancelled
EXIT_RUN_FAILED = 1


@contextmanager
def _current_folder_importable() -> Iterator[None]:
    """Modules of the current folder can be imported meanwhile (as with ``python -m``)."""
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        yield
    finally:
        if added and "" in sys.path:
            sys.path.remove("")


@click.command("rerun")
@one_run_options
@click.option("--context", "context_ref", default=None, metavar="MODULE:NAME",
              help="Import the experiment's context from MODULE:NAME (needed when the run was "
                   "made with a context other than None or {}; its fingerprint must match).")
@click.option("--force", is_flag=True, default=False,
              help="Execute the run even if it succeeded.")
def rerun_cmd(run_id: str, locator: str, experiment_id: str | None, context_ref: str | None,
              force: bool) -> None:
    """Execute one failed, cancelled or lost run again, in this process.

    The operation is imported by the reference the experiment's manifest
    records (run from the folder that holds its module, or set PYTHONPATH);
    params and seed come from the run's record, so the run id stays the
    same. Exits with status 1 when the new attempt fails.
    """
    from metalab._internal._refs import import_reference
    from metalab.execution._rerun import rerun_run

    with _current_folder_importable():
        kwargs = {"context": import_reference(context_ref, "context")} if context_ref else {}
        with open_store(locator, experiment_id) as store:
            found = find_run(store, run_id, locator)
        with open_store(locator, found["experiment_id"]) as scoped:
            click.echo(f"rerunning run {found['run_id']} ({found['experiment_id']}, "
                       f"was {found['status']})", err=True)
            record = rerun_run(scoped, found["run_id"], force=force, **kwargs)
    click.echo(f"run {record.run_id} ended {record.status.value} (attempt {record.attempt})")
    if record.error is not None:
        click.echo(f"error: {record.error.type}: {record.error.message}", err=True)
    if record.status.value != "success":
        click.get_current_context().exit(EXIT_RUN_FAILED)
