"""metalab: reproducible experiments with deterministic run ids and files-first storage.

This module is the curated public API.  Names are resolved lazily on first
attribute access (PEP 562), so ``import metalab`` is cheap: it loads none of
pandas, numpy, psycopg, rich or click.  Everything listed in ``__all__`` can be
imported with ``from metalab import <name>``.

Typical use::

    import metalab

    @metalab.operation
    def estimate(params, seeds, capture):
        ...

    exp = metalab.Experiment(name="demo", version="1", context={}, operation=estimate,
                             params=metalab.grid(n=[100, 1000]), seeds=metalab.seeds(0, 3))
    handle = metalab.run(exp, store="./experiments")
    results = handle.result()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metalab._version import __version__

if TYPE_CHECKING:  # pragma: no cover - static view of the lazy table below
    from metalab._errors import (
        CanonicalizationError,
        ConfigError,
        CorruptRecordError,
        ExecutionError,
        ExperimentMismatchError,
        IndexUnavailableError,
        InvalidNameError,
        MetalabError,
        MissingDependencyError,
        NotFoundError,
        OperationImportError,
        QueryError,
        QuerySyntaxError,
        ReadOnlyStoreError,
        RunCancelledError,
        ScopeError,
        StoreError,
        UnknownFieldError,
        UnknownSchemeError,
        ValidationError,
    )
    from metalab._errors import RunCancelledError as CancelledError
    from metalab.analysis import ExperimentInfo, Results, Run, load_results, set_column_names
    from metalab.definition import (
        DirPath,
        Experiment,
        FilePath,
        Operation,
        ParamCase,
        ParamResolver,
        ParamSource,
        SeedBundle,
        SeedPlan,
        choice,
        context_spec,
        dir_hash,
        file_hash,
        grid,
        loguniform,
        loguniform_int,
        manual,
        operation,
        randint,
        random,
        seeds,
        uniform,
        with_resolver,
    )
    from metalab.definition import Operation as OperationWrapper
    from metalab.execution import (
        Capture,
        DaskExecutor,
        Event,
        EventKind,
        Executor,
        Handle,
        ProcessExecutor,
        RunHandle,
        RunStatus,
        Runtime,
        SerialExecutor,
        SlurmConfig,
        SlurmExecutor,
        ThreadExecutor,
        reconnect,
        run,
    )
    from metalab.execution import RunHandle as LocalRunHandle
    from metalab.model import ArtifactDescriptor, ErrorInfo, Provenance, RunRecord, Status
    from metalab.store import (
        FileStore,
        FileStoreConfig,
        PostgresStoreConfig,
        Store,
        StoreConfig,
        create_store,
        export_store,
        parse_to_config,
    )

_ERRORS = (
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
)

# public name -> "module:attribute"; resolved on first access, then cached in globals()
_LAZY: dict[str, str] = {
    # record model
    "ArtifactDescriptor": "metalab.model:ArtifactDescriptor",
    "ErrorInfo": "metalab.model:ErrorInfo",
    "Provenance": "metalab.model:Provenance",
    "RunRecord": "metalab.model:RunRecord",
    "Status": "metalab.model:Status",
    # stores
    "FileStore": "metalab.store:FileStore",
    "FileStoreConfig": "metalab.store:FileStoreConfig",
    "PostgresStoreConfig": "metalab.store:PostgresStoreConfig",
    "Store": "metalab.store:Store",
    "StoreConfig": "metalab.store:StoreConfig",
    "create_store": "metalab.store:create_store",
    "export_store": "metalab.store:export_store",
    "parse_to_config": "metalab.store:parse_to_config",
    # experiment definition
    "DirPath": "metalab.definition:DirPath",
    "Experiment": "metalab.definition:Experiment",
    "FilePath": "metalab.definition:FilePath",
    "Operation": "metalab.definition:Operation",
    "ParamCase": "metalab.definition:ParamCase",
    "ParamSource": "metalab.definition:ParamSource",
    "SeedBundle": "metalab.definition:SeedBundle",
    "SeedPlan": "metalab.definition:SeedPlan",
    "choice": "metalab.definition:choice",
    "grid": "metalab.definition:grid",
    "loguniform": "metalab.definition:loguniform",
    "manual": "metalab.definition:manual",
    "operation": "metalab.definition:operation",
    "randint": "metalab.definition:randint",
    "random": "metalab.definition:random",
    "seeds": "metalab.definition:seeds",
    "uniform": "metalab.definition:uniform",
    # the original metalab's names (see docs/migrating.md)
    "CancelledError": "metalab._errors:RunCancelledError",
    "LocalRunHandle": "metalab.execution:RunHandle",
    "OperationWrapper": "metalab.definition:Operation",
    "ParamResolver": "metalab.definition:ParamResolver",
    "loguniform_int": "metalab.definition:loguniform_int",
    "set_column_names": "metalab.analysis:set_column_names",
    "ExperimentInfo": "metalab.analysis:ExperimentInfo",
    "context_spec": "metalab.definition:context_spec",
    "dir_hash": "metalab.definition:dir_hash",
    "file_hash": "metalab.definition:file_hash",
    "with_resolver": "metalab.definition:with_resolver",
    # analysis
    "Results": "metalab.analysis:Results",
    "Run": "metalab.analysis:Run",
    "load_results": "metalab.analysis:load_results",
    # execution
    "Capture": "metalab.execution:Capture",
    "DaskExecutor": "metalab.execution:DaskExecutor",
    "Event": "metalab.execution:Event",
    "EventKind": "metalab.execution:EventKind",
    "Executor": "metalab.execution:Executor",
    "Handle": "metalab.execution:Handle",
    "ProcessExecutor": "metalab.execution:ProcessExecutor",
    "RunHandle": "metalab.execution:RunHandle",
    "RunStatus": "metalab.execution:RunStatus",
    "Runtime": "metalab.execution:Runtime",
    "SerialExecutor": "metalab.execution:SerialExecutor",
    "SlurmConfig": "metalab.execution:SlurmConfig",
    "SlurmExecutor": "metalab.execution:SlurmExecutor",
    "ThreadExecutor": "metalab.execution:ThreadExecutor",
    "reconnect": "metalab.execution:reconnect",
    "run": "metalab.execution:run",
    # the exception tree
    **{name: f"metalab._errors:{name}" for name in _ERRORS},
}

__all__ = [
    "ArtifactDescriptor",
    "CancelledError",
    "CanonicalizationError",
    "Capture",
    "ConfigError",
    "CorruptRecordError",
    "DaskExecutor",
    "DirPath",
    "ErrorInfo",
    "Event",
    "EventKind",
    "ExecutionError",
    "Executor",
    "Experiment",
    "ExperimentInfo",
    "ExperimentMismatchError",
    "FilePath",
    "FileStore",
    "FileStoreConfig",
    "Handle",
    "IndexUnavailableError",
    "InvalidNameError",
    "LocalRunHandle",
    "MetalabError",
    "MissingDependencyError",
    "NotFoundError",
    "Operation",
    "OperationImportError",
    "OperationWrapper",
    "ParamCase",
    "ParamResolver",
    "ParamSource",
    "PostgresStoreConfig",
    "ProcessExecutor",
    "Provenance",
    "QueryError",
    "QuerySyntaxError",
    "ReadOnlyStoreError",
    "Results",
    "Run",
    "RunCancelledError",
    "RunHandle",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "ScopeError",
    "SeedBundle",
    "SeedPlan",
    "SerialExecutor",
    "SlurmConfig",
    "SlurmExecutor",
    "Status",
    "Store",
    "StoreConfig",
    "StoreError",
    "ThreadExecutor",
    "UnknownFieldError",
    "UnknownSchemeError",
    "ValidationError",
    "__version__",
    "choice",
    "context_spec",
    "create_store",
    "dir_hash",
    "export_store",
    "file_hash",
    "grid",
    "load_results",
    "loguniform",
    "loguniform_int",
    "manual",
    "operation",
    "parse_to_config",
    "randint",
    "random",
    "reconnect",
    "run",
    "seeds",
    "set_column_names",
    "uniform",
    "with_resolver",
]


def __getattr__(name: str) -> Any:
    """Resolve a public name on first use (PEP 562)."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'metalab' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
