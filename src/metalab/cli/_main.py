"""The root ``metalab`` command group and the ``main`` entry point."""

from __future__ import annotations

import click

from metalab._version import __version__
from metalab.cli._common import MetalabGroup
from metalab.cli._curate import register as register_curation
from metalab.cli._postgres import postgres, reconcile_cmd
from metalab.cli._rerun import rerun_cmd
from metalab.cli._runs import runs
from metalab.cli._store import store
from metalab.cli._ui import ui_cmd

__all__ = ["cli", "main"]


@click.group(cls=MetalabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="metalab")
def cli() -> None:
    """metalab: reproducible experiments with files-first storage.

    Run `metalab COMMAND --help` for the options of a command.
    """


# Command groups.  Each lives in its own module and is attached here; later
# groups (``postgres start|stop|status``, ``runs ls|show``) plug in the same way.
cli.add_command(store)
store.add_command(reconcile_cmd)
cli.add_command(postgres)
cli.add_command(runs)
runs.add_command(rerun_cmd)
register_curation(runs, store)  # runs tag|untag|note|rm, store rm
cli.add_command(ui_cmd)


def main() -> None:
    """Entry point of the ``metalab`` script."""
    cli(prog_name="metalab")
