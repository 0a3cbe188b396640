"""Run queries: one filter language, evaluated in memory or pushed down to SQL.

* :mod:`._ast`: the AST and the typed value rules every engine follows.
* :mod:`._parser`: text and keyword forms -> AST (:func:`build_query`).
* :mod:`._eval`: the in-memory engine (reference semantics, any store).
* :mod:`._sqlite` / :mod:`._catalog`: the FileStore's embedded catalog.
* :mod:`._pgsql`: the PostgreSQL compiler used by PostgresStore.
"""

from metalab.query._ast import Field, Node, Query
from metalab.query._eval import run_query
from metalab.query._liveness import lost_cutoff
from metalab.query._parser import build_query, from_keywords, parse, parse_field
from metalab.store._query._catalog import Catalog, CatalogUnavailable

__all__ = [
    "Catalog",
    "CatalogUnavailable",
    "Field",
    "Node",
    "Query",
    "build_query",
    "from_keywords",
    "lost_cutoff",
    "parse",
    "parse_field",
    "run_query",
]
