"""The exception tree of metalab.

Every error metalab raises on purpose derives from :class:`MetalabError`, so
``except metalab.MetalabError`` catches all of them.  Where a built-in
exception has the same meaning, the class inherits it too, so existing
``except ValueError`` / ``except KeyError`` clauses keep working::

    MetalabError
    ├── ConfigError (ValueError)              bad store config, locator or option
    │   ├── UnknownSchemeError                no store registered for a URI scheme
    │   └── ScopeError                        operation needs an (un)scoped config
    ├── ValidationError (ValueError)          bad user input
    │   ├── InvalidNameError                  a name would escape its folder
    │   ├── CanonicalizationError             a value has no canonical encoding
    │   └── QueryError                        a run query cannot be used
    │       ├── QuerySyntaxError              malformed query text (points at the position)
    │       └── UnknownFieldError             a query names a field no run has
    ├── StoreError                            storage failed or is inconsistent
    │   ├── NotFoundError (KeyError)          run, artifact, log or data missing
    │   ├── CorruptRecordError                a stored file cannot be parsed
    │   ├── ExperimentMismatchError           two experiment ids, one folder
    │   ├── IndexUnavailableError             the query index cannot be reached
    │   └── ReadOnlyStoreError                a write to a read-only store
    ├── ExecutionError                        running an operation failed
    │   ├── OperationImportError (ImportError)  a worker cannot import the operation
    │   └── RunCancelledError                 a run was cancelled
    └── MissingDependencyError (ImportError)  an optional extra is not installed

Messages say what went wrong and what to do next.  They never contain
passwords (see :func:`metalab._internal.redact`).
"""

from __future__ import annotations

__all__ = [
    "CanonicalizationError",
    "ConfigError",
    "CorruptRecordError",
    "ExecutionError",
    "ExperimentMismatchError",
    "IndexUnavailableError",
    "InvalidNameError",
    "MetalabError",
    "MissingDependencyError",
    "NotFoundError",
    "OperationImportError",
    "QueryError",
    "QuerySyntaxError",
    "ReadOnlyStoreError",
    "RunCancelledError",
    "ScopeError",
    "StoreError",
    "UnknownFieldError",
    "UnknownSchemeError",
    "ValidationError",
]


class MetalabError(Exception):
    """Root of every error metalab raises on purpose."""


class ConfigError(MetalabError, ValueError):
    """A store config, locator or option is invalid."""


class UnknownSchemeError(ConfigError):
    """No store config is registered for a locator's scheme."""


class ScopeError(ConfigError):
    """The operation needs a scoped config (or an unscoped one)."""


class ValidationError(MetalabError, ValueError):
    """User input is invalid."""


class InvalidNameError(ValidationError):
    """A user-given name (artifact, log, data, experiment) is not allowed."""


class CanonicalizationError(ValidationError):
    """A value cannot be encoded canonically (NaN, inf, unsupported type)."""


class QueryError(ValidationError):
    """A run query (filter, columns or ordering) cannot be used.

    Attributes:
        query: the query text (``""`` for the keyword form).
        position: 0-based character offset of the problem in ``query``, or
            ``None`` when it has no position.
    """

    def __init__(self, message: str, query: str = "", position: int | None = None) -> None:
        if position is not None and query:
            message = f"{message}\n  {query}\n  {' ' * position}^"
        super().__init__(message)
        self.query = query
        self.position = position


class QuerySyntaxError(QueryError):
    """The query text is malformed; the message shows where with a caret."""


class UnknownFieldError(QueryError):
    """A query names a field that no run of the experiment has.

    Attributes:
        field: the unknown field name; ``suggestions``: close known names.
    """

    def __init__(
        self,
        message: str,
        query: str = "",
        position: int | None = None,
        *,
        field: str = "",
        suggestions: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, query, position)
        self.field = field
        self.suggestions = suggestions


class StoreError(MetalabError):
    """A store operation failed or found inconsistent data."""


class ReadOnlyStoreError(StoreError):
    """A write was asked of a store opened read-only; nothing was written.

    Attributes:
        method: the refused method (``"put_run_record"``, ...).
    """

    def __init__(self, message: str, method: str = "") -> None:
        super().__init__(message)
        self.method = method


class NotFoundError(StoreError, KeyError):
    """A run, artifact, log, data item or experiment does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CorruptRecordError(StoreError):
    """A stored file exists but cannot be parsed.

    Attributes:
        path: the file that could not be read.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ExperimentMismatchError(StoreError):
    """Two different experiment ids would share one folder."""


class IndexUnavailableError(StoreError):
    """The query index (e.g. PostgreSQL) cannot be reached."""


class ExecutionError(MetalabError):
    """Running an operation failed outside the operation itself."""


class OperationImportError(ExecutionError, ImportError):
    """A worker cannot import the operation it was asked to run."""


class RunCancelledError(ExecutionError):
    """The run was cancelled (SIGTERM, handle.cancel(), Ctrl-C)."""


class MissingDependencyError(MetalabError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {package!r}. "
            f'Install it with: pip install "metalab[{extra}]"'
        )
        self.package = package
        self.extra = extra
