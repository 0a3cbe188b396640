"""Run documents and the query language over them.

What every store and reader shares about a run document, independent of
where it is kept (``metalab.store`` builds on this package; this package
never imports a store):

* The filter language: its AST and typed value rules (:class:`Query`,
  :class:`Field`, :class:`Node`), the text and keyword parsers
  (:func:`parse`, :func:`from_keywords`, :func:`build_query`) and the
  in-memory engine (:func:`run_query`, :func:`evaluate`), which is the
  reference semantics the SQLite and PostgreSQL indexes follow.
* Liveness, the one "when is a run lost" rule (:func:`effective_status`,
  :func:`lost_cutoff`, and its SQL form :func:`lost_status_sql` for the
  indexes) and its settings (:func:`lost_after_seconds`,
  :func:`heartbeat_interval`).
* Which documents are runs (:func:`record_problem`, :func:`parse_record`)
  and where bulk readers report the ones they skip (:func:`problems_to`).
* Which fields a set of runs has (:func:`known_fields`).

Everything here is pure or context-local (``problems_to``) and safe to use
from several threads at once.  Query errors raise
:class:`~metalab.QuerySyntaxError` / :class:`~metalab.UnknownFieldError`
(both :class:`~metalab.QueryError`).
"""

from metalab.query._ast import Field, Node, Query
from metalab.query._eval import evaluate, run_query
from metalab.query._fields import known_fields
from metalab.query._liveness import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_LOST_AFTER_S,
    HEARTBEAT_INTERVAL_ENV,
    LOST_AFTER_ENV,
    effective_status,
    heartbeat_interval,
    lost_after_seconds,
    lost_cutoff,
    lost_status_sql,
    status_at_cutoff,
)
from metalab.query._parser import as_query, build_query, from_keywords, parse, parse_field
from metalab.query._records import (
    STATUS_VALUES,
    ErrorCallback,
    parse_record,
    problems_to,
    record_problem,
    report_problem,
    warn_corrupt,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_LOST_AFTER_S",
    "HEARTBEAT_INTERVAL_ENV",
    "LOST_AFTER_ENV",
    "STATUS_VALUES",
    "ErrorCallback",
    "Field",
    "Node",
    "Query",
    "as_query",
    "build_query",
    "effective_status",
    "evaluate",
    "from_keywords",
    "heartbeat_interval",
    "known_fields",
    "lost_after_seconds",
    "lost_cutoff",
    "lost_status_sql",
    "parse",
    "parse_field",
    "parse_record",
    "problems_to",
    "record_problem",
    "report_problem",
    "run_query",
    "status_at_cutoff",
    "warn_corrupt",
]
