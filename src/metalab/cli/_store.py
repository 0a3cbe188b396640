"""``metalab store ...``: copy experiments between stores, list what a store holds,
rebuild its query index."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import click

from metalab._internal import _json
from metalab._internal._redact import redact
from metalab.cli._common import MetalabGroup, open_store, progress_callback

__all__ = ["rebuild_index_cmd", "reindex_alias", "store"]

_STATUS_COLUMNS = ("success", "failed", "running", "cancelled", "lost")


@click.group(cls=MetalabGroup)
def store() -> None:
    """Inspect stores and copy experiments between them."""


def _transfer_options(fn: Any) -> Any:
    fn = click.option(
        "--overwrite", is_flag=True, help="Replace runs that already exist in the destination."
    )(fn)
    fn = click.option(
        "--experiment", "-e", "experiment_id", default=None, metavar="ID",
        help="Copy only this experiment (e.g. 'my_exp:1.0'); default: all of them.",
    )(fn)
    fn = click.option(
        "--to", "-t", "destination", required=True, metavar="LOCATOR",
        help="Destination store: a path, file:// or postgresql:// locator.",
    )(fn)
    fn = click.option(
        "--from", "-f", "source", required=True, metavar="LOCATOR",
        help="Source store: a path, file:// or postgresql:// locator.",
    )(fn)
    return fn


def _report_counts(report: Any) -> dict[str, int]:
    """The counters of a TransferReport as a plain dict."""
    return {k: v for k, v in dataclasses.asdict(report).items() if isinstance(v, int)}


def _transfer(source: str, destination: str, experiment_id: str | None, overwrite: bool) -> None:
    from metalab.store import export_store

    with progress_callback("Copying runs") as progress:
        report = export_store(
            source, destination, experiment_id=experiment_id, overwrite=overwrite,
            progress=progress,
        )
    counts = _report_counts(report)
    click.echo("copied: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@store.command("export")
@_transfer_options
def export_cmd(source: str, destination: str, experiment_id: str | None, overwrite: bool) -> None:
    """Copy runs, artifacts, logs, data and manifests from one store to another.

    Runs already present in the destination are skipped unless --overwrite.
    """
    _transfer(source, destination, experiment_id, overwrite)


@store.command("import")
@_transfer_options
def import_cmd(source: str, destination: str, experiment_id: str | None, overwrite: bool) -> None:
    """Pull experiments from another store into this one (same as `store export`).

    Example: metalab store import --from /shared/experiments --to ./experiments
    """
    _transfer(source, destination, experiment_id, overwrite)


def _status_counts(locator: str) -> dict[str, dict[str, int]]:
    """Per experiment, its runs by status (the store's index when it can answer)."""
    from metalab.store import make_store

    out: dict[str, dict[str, int]] = {}
    with make_store(locator, must_exist=True) as st:
        for exp_id in sorted(st.list_experiments()):
            counts = st.status_counts(exp_id)
            out[exp_id] = {"total": sum(counts.values()), **dict(sorted(counts.items()))}
    return out


@store.command("list")
@click.option("--store", "-s", "locator", required=True, metavar="LOCATOR",
              help="The store (collection) to list: a path, file:// or postgresql:// locator.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(locator: str, as_json: bool) -> None:
    """List the experiments in a store with their run counts by status."""
    counts = _status_counts(locator)
    if as_json:
        click.echo(_json.dumps_pretty(counts).decode())
        return
    if not counts:
        click.echo("no experiments found")
        return
    width = max(len("experiment"), *(len(e) for e in counts))
    cols = ("total", *_STATUS_COLUMNS)
    click.echo(f"{'experiment':<{width}}  " + "  ".join(f"{c:>9}" for c in cols))
    for exp_id, row in counts.items():
        click.echo(f"{exp_id:<{width}}  " + "  ".join(f"{row.get(c, 0):>9}" for c in cols))


@store.command("rebuild-index")
@click.option("--store", "-s", "locator", required=True, metavar="LOCATOR",
              help="The store: a path, file:// or postgresql:// locator.")
@click.option(
    "--experiment", "-e", "experiment_id", default=None, metavar="ID",
    help="Rebuild only this experiment's index (others are left untouched); default: all.",
)
def rebuild_index_cmd(locator: str, experiment_id: str | None) -> None:
    """Rebuild the store's query index from its files.

    The files are the source of truth; the index only speeds up queries.  A
    FileStore rebuilds its catalog (.catalog/ in each experiment folder); a
    PostgreSQL store rebuilds its index tables (binary COPY, one transaction
    per experiment).  A store without an index has nothing to rebuild.
    """
    with open_store(locator, experiment_id) as st:
        if not st.supports_index:
            click.echo("this store keeps no query index; nothing to do")
            return
        with progress_callback("Indexing runs") as progress:
            count = st.rebuild_index(progress=progress)
        scope = f"experiment {experiment_id}" if experiment_id else "all experiments"
        click.echo(f"index of {redact(locator)} rebuilt ({scope}): {count} {st.index_unit}")


#: ``metalab store reindex``: the former name of ``rebuild-index`` (hidden, kept for scripts)
reindex_alias = copy.copy(rebuild_index_cmd)
reindex_alias.name = "reindex"
reindex_alias.hidden = True
reindex_alias.help = "Same as `metalab store rebuild-index` (its former name)."
store.add_command(reindex_alias)
