"""``metalab store reconcile`` and ``metalab postgres start|stop|status``.

(``metalab store rebuild-index``, for every store with an index, is in ``_store``.)

Thin layers over :class:`metalab.store.PostgresStore` and
:mod:`metalab.services`.  Nothing here prints a password: locators are shown
without one, and a password for a new server is read from an environment
variable, never from the command line (which other users can see in ``ps``).
"""

from __future__ import annotations

import os
from typing import Any

import click

from metalab._internal._redact import redact
from metalab.cli._common import MetalabGroup, progress_callback

__all__ = ["postgres", "reconcile_cmd"]

#: where ``metalab postgres`` keeps its server when --data-dir is not given
DEFAULT_DATA_DIR = os.path.join("~", ".local", "share", "metalab", "postgres")


def _postgres_store(locator: str, experiment_id: str | None) -> Any:
    """Open ``locator`` as a PostgresStore (scoped to ``experiment_id`` if given)."""
    from metalab._errors import ConfigError
    from metalab.store import PostgresStoreConfig, make_config, make_store

    config = make_config(locator)
    if not isinstance(config, PostgresStoreConfig):
        raise ConfigError(
            f"{redact(locator)} is not a PostgreSQL store; this command needs a locator like "
            "'postgresql://user@host:5432/db?file_root=/path/to/files'"
        )
    return make_store(config, experiment_id=experiment_id)


_store_option = click.option(
    "--store", "-s", "locator", required=True, metavar="LOCATOR",
    help="The PostgreSQL store: 'postgresql://user@host:port/db?file_root=/path/to/files'.",
)


@click.command("reconcile")
@_store_option
@click.option(
    "--full", is_flag=True,
    help="Compare every experiment with its files, not only the changes the journal lists.",
)
def reconcile_cmd(locator: str, full: bool) -> None:
    """Bring the PostgreSQL index back in line with the files.

    Replays the changes the index missed (server down, deferred indexing, a
    process that died before flushing) and re-syncs experiments whose rebuild
    was interrupted.
    """
    with _postgres_store(locator, None) as store, progress_callback("Re-syncing runs") as progress:
        report = store.reconcile(full=full, progress=progress)
    resynced = ", ".join(report["resynced"]) or "none"
    click.echo(
        f"replayed {report['replayed']} journal items; re-synced experiments: {resynced} "
        f"({report['runs']} runs)"
    )


# --------------------------------------------------------------------- server
@click.group(cls=MetalabGroup)
def postgres() -> None:
    """Run a local PostgreSQL server for one user (loopback only)."""


_data_dir_option = click.option(
    "--data-dir", "-d", default=DEFAULT_DATA_DIR, show_default=True, metavar="DIR",
    help="Folder holding the server's files (created on first start).",
)


def _data_dir(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


@postgres.command("start")
@_data_dir_option
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=None, metavar="N",
              help="TCP port on 127.0.0.1; default: the previous one, else a free one.")
@click.option(
    "--password-env", default=None, metavar="VAR",
    help="Require a password, read from environment variable VAR (only when the folder "
    "is first created; the password is never stored or printed).",
)
@click.option("--file-root", default=None, metavar="DIR",
              help="Add ?file_root=DIR to the printed store locator.")
def start_cmd(data_dir: str, port: int | None, password_env: str | None,
              file_root: str | None) -> None:
    """Create (first time) and start a local PostgreSQL server; print its locator.

    Uses the machine's PostgreSQL binaries.  The server listens on 127.0.0.1
    only.  Run as root, it runs as an unprivileged OS user ('postgres').
    """
    from metalab._errors import ConfigError
    from metalab.services import server_status, start_server

    folder = _data_dir(data_dir)
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise ConfigError(
                f"--password-env {password_env}: the environment variable is not set or "
                f"empty; export {password_env}=... first"
            )
    before = server_status(folder)
    if password is not None and before is not None:
        click.echo("note: the server already exists; its password is unchanged", err=True)
    info = start_server(folder, port=port, password=password)
    state = "already running" if before is not None and before.running else "started"
    click.echo(f"PostgreSQL {state} in {info.data_dir} (127.0.0.1:{info.port})")
    click.echo(f"store locator: {info.locator(file_root)}")
    if password is not None:
        click.echo(f"the password is not part of the locator: set PGPASSWORD=${password_env} "
                   "or use a ~/.pgpass entry")
    if file_root is None:
        click.echo("add ?file_root=/path/to/files to the locator to use it as a store")


@postgres.command("stop")
@_data_dir_option
def stop_cmd(data_dir: str) -> None:
    """Stop the local PostgreSQL server of a data folder (its data is kept)."""
    from metalab.services import stop_server

    folder = _data_dir(data_dir)
    if stop_server(folder):
        click.echo(f"PostgreSQL in {folder} stopped")
    else:
        click.echo(f"no PostgreSQL server running in {folder}")


@postgres.command("status")
@_data_dir_option
def status_cmd(data_dir: str) -> None:
    """Tell whether the local server runs, and its store locator.

    Exit code 0 when running, 3 when stopped or never created.
    """
    from metalab.services import server_status

    folder = _data_dir(data_dir)
    info = server_status(folder)
    if info is None:
        click.echo(f"no PostgreSQL server in {folder} (create one with `metalab postgres start`)")
        raise SystemExit(3)
    if not info.running:
        click.echo(f"PostgreSQL in {folder} is stopped (port {info.port} when running)")
        raise SystemExit(3)
    click.echo(f"PostgreSQL in {folder} is running on 127.0.0.1:{info.port}")
    click.echo(f"store locator: {info.locator()}")
