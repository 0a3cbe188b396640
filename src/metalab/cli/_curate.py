"""``metalab runs tag|untag|note|rm`` and ``metalab store rm``: curate results after the fact.

Thin commands over :meth:`~metalab.store.Store.annotate_runs`,
:meth:`~metalab.store.Store.annotate_experiment`,
:meth:`~metalab.store.Store.delete_run` and
:meth:`~metalab.store.Store.delete_experiment`.  Runs are chosen by id or by
a query (``--where``); ``--experiment-wide`` tags (or notes) the experiment,
which reaches all its runs, those run later included.  Deleting asks for
confirmation on a terminal; without a terminal it needs ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from metalab._errors import NotFoundError, ValidationError
from metalab.cli._common import open_store

__all__ = ["register"]

#: ids listed in a deletion's confirmation prompt before "..."
_SHOWN_IDS = 10


def _stdin_is_tty() -> bool:
    """True if a person can answer a prompt (tests replace it)."""
    return sys.stdin.isatty()


def _store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--experiment", "-e", "experiment_id", default=None, metavar="ID",
                      help="The experiment (needed with --experiment-wide on a collection, "
                           "and to narrow --where).")(fn)
    return click.option("--store", "-s", "locator", required=True, metavar="LOCATOR",
                        help="The store: a path, file:// or postgresql:// locator.")(fn)


def _selection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--where", "-w", default=None, metavar="QUERY",
                      help="The runs matching this query (see docs/queries.md), e.g. "
                           "'params.lr < 0.01'.")(fn)
    fn = click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")(fn)
    return _store_options(fn)


def _selected(store: Any, experiment_id: str | None, run_ids: tuple[str, ...],
              where: str | None) -> list[str]:
    """The run ids the command acts on: those given, or those ``where`` matches."""
    if bool(run_ids) == (where is not None):
        raise ValidationError("name the runs: give run ids or --where QUERY (one of the two)")
    if run_ids:
        return list(dict.fromkeys(run_ids))
    found = store.query_runs(experiment_id, where, columns=["run_id"])
    return [str(d["run_id"]) for d in found]


def _annotate(locator: str, experiment_id: str | None, run_ids: tuple[str, ...],
              where: str | None, experiment_wide: bool, verb: str, **change: Any) -> None:
    with open_store(locator, experiment_id) as store:
        if experiment_wide:
            if run_ids or where is not None:
                raise ValidationError("--experiment-wide acts on the whole experiment: "
                                      "give no run ids and no --where")
            changed = store.annotate_experiment(experiment_id, **change)
            eid = experiment_id or store.experiment_id
            click.echo(f"{verb} experiment {eid}" + ("" if changed else " (no change)"))
            return
        ids = _selected(store, experiment_id, run_ids, where)
        if not ids:
            click.echo("no runs match; nothing changed")
            return
        written = store.annotate_runs(ids, **change)
    click.echo(f"{verb} {len(ids)} run(s) ({len(written)} changed)")


def _tag_command(name: str, verb: str, key: str, summary: str) -> click.Command:
    @_selection_options
    @click.option("--tag", "-t", "tags", multiple=True, required=True, metavar="TAG",
                  help="A tag (repeat for several).")
    @click.option("--experiment-wide", is_flag=True,
                  help="Tag the experiment itself: its tags reach all its runs.")
    def command(locator: str, experiment_id: str | None, run_ids: tuple[str, ...],
                where: str | None, tags: tuple[str, ...], experiment_wide: bool) -> None:
        _annotate(locator, experiment_id, run_ids, where, experiment_wide, verb,
                  **{key: list(tags)})

    command.__doc__ = (f"{summary} chosen by id or --where.\n\n"
                       "With --experiment-wide, of the experiment itself: its tags reach all "
                       "its runs, those run later too.\n\n"
                       f"Example: metalab runs {name} -s ./experiments "
                       "-w 'params.lr < 0.01' -t baseline")
    return click.command(name)(command)


@click.command("note")
@_selection_options
@click.option("--message", "-m", default=None, metavar="TEXT", help="The note.")
@click.option("--clear", is_flag=True, help="Drop the note set after the fact.")
@click.option("--experiment-wide", is_flag=True, help="The note of the experiment itself.")
def note_cmd(locator: str, experiment_id: str | None, run_ids: tuple[str, ...],
             where: str | None, message: str | None, clear: bool,
             experiment_wide: bool) -> None:
    """Set the note of runs (by id or --where) or of an experiment.

    Example: metalab runs note -s ./experiments 3f2a... -m 'diverged: lr too high'
    """
    if (message is None) == (not clear):
        raise ValidationError("give the note with -m TEXT, or --clear (one of the two)")
    _annotate(locator, experiment_id, run_ids, where, experiment_wide,
              "noted" if message is not None else "cleared the note of", note=message)


def _confirm(what: str, yes: bool) -> None:
    """Ask before deleting ``what``; raise click.Abort on no.

    Raises:
        ValidationError: no ``--yes`` and no terminal to ask on.
    """
    if yes:
        return
    if not _stdin_is_tty():
        raise ValidationError(f"refusing to delete {what} without confirmation: the input is "
                              "not a terminal; pass --yes to delete")
    if not click.confirm(f"Delete {what}? This cannot be undone", default=False, err=True):
        raise click.Abort()


@click.command("rm")
@_selection_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm_runs_cmd(locator: str, experiment_id: str | None, run_ids: tuple[str, ...],
                where: str | None, yes: bool) -> None:
    """Delete runs (by id or --where) with all their files, tags and notes.

    Example: metalab runs rm -s ./experiments -w 'status = "failed"' --yes
    """
    with open_store(locator, experiment_id) as store:
        ids = _selected(store, experiment_id, run_ids, where)
        missing = [rid for rid in ids if not store.run_exists(rid)]
        if missing:
            raise NotFoundError(f"no run {', '.join(missing[:5])} in {locator}; nothing was "
                                f"deleted (list runs with: metalab runs ls --store {locator})")
        if not ids:
            click.echo("no runs match; nothing deleted")
            return
        shown = ", ".join(ids[:_SHOWN_IDS]) + (" ..." if len(ids) > _SHOWN_IDS else "")
        _confirm(f"{len(ids)} run(s) ({shown})", yes)
        for rid in ids:
            store.delete_run(rid)
    click.echo(f"deleted {len(ids)} run(s)")


@click.command("rm")
@_store_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm_experiment_cmd(locator: str, experiment_id: str | None, yes: bool) -> None:
    """Delete an experiment with all its runs, manifests, tags and notes.

    Example: metalab store rm -s ./experiments -e my_exp:1.0
    """
    with open_store(locator, experiment_id) as store:
        eid = experiment_id or store.experiment_id
        if eid is None:
            raise ValidationError("name the experiment to delete with -e ID")
        n = sum(1 for _ in store.iter_run_documents(eid))
        _confirm(f"experiment {eid} and its {n} run(s)", yes)
        store.delete_experiment(eid)
    click.echo(f"deleted experiment {eid} ({n} runs)")


def register(runs: click.Group, store: click.Group) -> None:
    """Attach the curation commands to the ``runs`` and ``store`` groups."""
    runs.add_command(_tag_command("tag", "tagged", "add_tags", "Add tags to runs"))
    runs.add_command(_tag_command("untag", "untagged", "remove_tags",
                                  "Take tags from runs"))
    runs.add_command(note_cmd)
    runs.add_command(rm_runs_cmd)
    store.add_command(rm_experiment_cmd)
