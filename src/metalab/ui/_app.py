"""The ASGI application of ``metalab ui``: routes, error handling, security headers, the token.

Every route is a GET (HEAD): nothing here writes to the store.  Pages are
server-rendered with Jinja2 (autoescaping on: every user string is
escaped) and a little plain JavaScript (``static/ui.js``); the JSON API
under ``/api/`` serves everything the pages show.  Files of a run are
served by name through the store (:mod:`metalab.ui._files`).  Assets ship
in the installed packages (``static/`` here, plotly.js from the plotly
wheel): no CDN, no network.

Thread safety: the app may serve requests concurrently (Starlette runs
the synchronous handlers in a thread pool); it keeps no state besides the
:class:`~metalab.ui._views.StoreView`, which is thread-safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import metalab.ui._pages as _pages
from metalab._errors import (
    MetalabError,
    MissingDependencyError,
    NotFoundError,
    ValidationError,
)
from metalab._internal import _json
from metalab.store import Store
from metalab.ui._api import API_ROUTES
from metalab.ui._http import error_body
from metalab.ui._views import StoreView

__all__ = ["build_app", "token_cookie"]

HERE = Path(__file__).resolve().parent
#: the start of the name of the cookie that carries the access token after the first
#: request with ``?token=`` (see :func:`token_cookie`)
TOKEN_COOKIE_PREFIX = "metalab_ui_token_"
#: hex digits of the token's hash in the cookie name
_COOKIE_HASH_CHARS = 12
#: the Host headers a loopback-only server answers (a defence against DNS rebinding)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
_CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'")


def token_cookie(token: str) -> str:
    """The name of the cookie holding ``token``: it holds a short hash of the token,
    because cookies are shared by every port of a host and two servers on one
    machine (each with its own token) must not overwrite each other's cookie."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:_COOKIE_HASH_CHARS]
    return TOKEN_COOKIE_PREFIX + digest


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, MissingDependencyError):
        return 501
    return 500


async def _metalab_error(request: Request, exc: Exception) -> Response:
    status = _status_of(exc)
    if request.url.path.startswith("/api/"):
        return JSONResponse(error_body(exc), status_code=status)
    return _pages.error_page(request, status, error_body(exc)["error"])


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "not found", "type": "NotFound"}, status_code=404)
    return _pages.error_page(request, 404, "not found")


class _Guard(BaseHTTPMiddleware):
    """Checks the access token (when one is set) and adds the security headers."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token
        self.cookie = token_cookie(token) if token is not None else ""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        set_cookie = False
        if self.token is not None:
            given = _given_token(request, self.cookie)
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse(
                    "this metalab ui needs its access token: open the URL it printed "
                    "(with ?token=...)", status_code=401)
            set_cookie = request.query_params.get("token") is not None
        response = await call_next(request)
        headers = response.headers
        headers["Content-Security-Policy"] = _CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        if request.url.path.startswith("/api/"):
            headers["Cache-Control"] = "no-store"
        if set_cookie and self.token is not None:
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
        return response


def _given_token(request: Request, cookie: str) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token") or request.cookies.get(cookie)


def _plotly_js(request: Request) -> Response:
    from metalab.analysis import plotly_js_path

    return FileResponse(plotly_js_path(), media_type="text/javascript")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every {{ value }} is HTML-escaped
        undefined=jinja2.StrictUndefined,
    )
    env.filters["seg"] = lambda value: quote(str(value), safe=":@")
    env.filters["cell"] = _pages.cell
    env.filters["pretty"] = lambda value: _json.dumps_pretty(value).decode()
    return Jinja2Templates(env=env)


def build_app(store: Store, *, token: str | None = None, locator: str | None = None,
              loopback_only: bool = True) -> Starlette:
    """The Starlette app serving ``store`` (see :func:`metalab.ui.create_app`)."""
    view = StoreView(store)
    routes = [
        *_pages.PAGE_ROUTES,
        *API_ROUTES,
        Route("/static/plotly.min.js", _plotly_js, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(_Guard, token=token)]
    if loopback_only:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=[
            *LOOPBACK_HOSTS]))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={MetalabError: _metalab_error, 404: _not_found},
        lifespan=_closing(view),
    )
    app.state.view = view
    app.state.templates = _templates()
    app.state.locator = locator or _locator_of(store)
    return app


def _closing(view: StoreView) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            view.close()

    return lifespan


def _locator_of(store: Store) -> str:
    if store.supports_working_directory:
        return store.get_working_directory()
    return "<store locator>"
