"""``metalab ui``: look at a store in the browser (experiments, runs, run pages, comparisons, plots).

:func:`create_app` builds the ASGI application over a store (FileStore or
PostgresStore, a collection or one experiment); :func:`serve` runs it with
uvicorn, as ``metalab ui`` does.  Needs the ``ui`` extra
(``pip install "metalab[ui]"``: starlette, uvicorn, jinja2, plotly); those
packages are imported only when an app is built.

Security: loopback only by default; a server on another interface needs an
access token (every request then carries it); no endpoint writes to the
store; files are served by name through the store, never by a path.
"""

from metalab.ui._serve import DEFAULT_HOST, DEFAULT_PORT, create_app, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]
