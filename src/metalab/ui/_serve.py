"""Building and running the ``metalab ui`` server: the host / token rule, uvicorn, the browser."""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from metalab._errors import ConfigError, MissingDependencyError
from metalab._internal._redact import redact
from metalab.store import Store

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "is_loopback", "resolve_token", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: bytes of randomness of a generated access token
TOKEN_BYTES = 24
#: the ``--token`` value that asks for a generated token (on loopback too)
AUTO_TOKEN = "auto"


def _require_packages() -> None:
    for module, package in (("starlette", "starlette"), ("uvicorn", "uvicorn"),
                            ("jinja2", "jinja2"), ("plotly", "plotly")):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(package, "ui", "metalab ui") from exc


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None, *, generate: bool = True) -> str | None:
    """The access token the server at ``host`` requires (None: none needed).

    A loopback host needs none unless one is given.  Any other host needs
    one: ``token`` if given, else a generated one (``generate``), else
    :class:`~metalab.ConfigError`.  ``token="auto"`` (:data:`AUTO_TOKEN`)
    asks for a generated one on any host (for a loopback address shared by
    the other users of the machine, as on an HPC login node).
    """
    if token is not None and not token.strip():
        raise ConfigError("--token must not be empty")
    if token == AUTO_TOKEN:
        return secrets.token_urlsafe(TOKEN_BYTES)
    if token is not None or is_loopback(host):
        return token
    if not generate:
        raise ConfigError(
            f"--host {host} exposes the UI beyond this machine: give it an access token "
            "with --token (or let metalab ui generate one)")
    return secrets.token_urlsafe(TOKEN_BYTES)


def create_app(store: Store, *, token: str | None = None, locator: str | None = None,
               loopback_only: bool = True) -> Any:
    """The ASGI app (Starlette) serving ``store`` read-only.

    ``token``: every request must carry it (``?token=``, a cookie set by
    that first request, or ``Authorization: Bearer``).  ``locator``: how the
    "copy as Python / CLI" snippets name the store (passwords removed).
    ``loopback_only``: answer only requests whose Host header is a loopback
    name (a defence against DNS rebinding; the CLI turns it off for
    another ``--host``).  The app does not close ``store``.

    Raises:
        MissingDependencyError: the ``ui`` extra is not installed.
    """
    _require_packages()
    from metalab.ui._app import build_app

    return build_app(store, token=token, locator=locator, loopback_only=loopback_only)


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(
    store: Store,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    open_browser: bool = True,
    locator: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve ``store`` until interrupted (blocks); prints the URL, opens a browser if asked.

    A host other than loopback gets a generated token when none is given
    (the printed URL carries it).  Raises MissingDependencyError without the
    ``ui`` extra, ConfigError for an empty token, OSError when the port is taken.
    """
    token = resolve_token(host, token)
    app = create_app(store, token=token, locator=locator, loopback_only=is_loopback(host))
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    shown_store = redact(locator) if locator else "the store"  # (never the password)
    echo(f"metalab ui serving {shown_store} at {url}  (Ctrl+C stops it)")
    if open_browser and _has_display():
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
