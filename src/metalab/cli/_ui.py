"""``metalab ui``: serve a store's web UI (a thin wrapper of :func:`metalab.ui.serve`)."""

from __future__ import annotations

import click

__all__ = ["ui_cmd"]


@click.command("ui")
@click.option("--store", "-s", "locator", default=None, metavar="LOCATOR",
              help="The store: a path, file:// or postgresql:// locator (default: ./experiments).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; anything but loopback needs an access token "
                   "(generated and printed when --token is not given).")
@click.option("--port", default=8765, show_default=True, type=int, help="TCP port.")
@click.option("--token", default=None, metavar="TOKEN",
              help="Access token every request must carry (?token=...); 'auto' generates one.")
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
def ui_cmd(locator: str | None, host: str, port: int, token: str | None,
           no_browser: bool) -> None:
    """Look at the experiments and runs of a store in the browser (read-only).

    Example: metalab ui --store ./experiments
    """
    from metalab.store import DEFAULT_STORE_ROOT, make_store
    from metalab.ui import serve

    shown = locator if locator is not None else DEFAULT_STORE_ROOT
    with make_store(shown, must_exist=True) as store:
        serve(store, host=host, port=port, token=token, open_browser=not no_browser,
              locator=str(shown), echo=click.echo)
