"""The curated public API: complete, sorted, resolvable, and light to import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import metalab
import metalab._errors

EXPECTED = {
    "__version__",
    # definition
    "Experiment", "Operation", "operation", "grid", "random", "manual", "uniform",
    "loguniform", "randint", "choice", "seeds", "SeedBundle", "SeedPlan", "FilePath",
    "DirPath", "ParamSource", "ParamCase",
    # execution
    "run", "Handle", "RunHandle", "RunStatus", "Executor", "SerialExecutor", "ThreadExecutor",
    "ProcessExecutor", "Capture", "Runtime", "Event", "EventKind",
    "SlurmExecutor", "SlurmConfig", "DaskExecutor", "reconnect",
    # analysis
    "load_results", "Results", "Run",
    # model
    "RunRecord", "Status", "ArtifactDescriptor", "Provenance", "ErrorInfo",
    # store
    "Store", "StoreConfig", "FileStore", "FileStoreConfig", "PostgresStoreConfig",
    "create_store", "parse_to_config", "export_store",
    # the original metalab's names (docs/migrating.md)
    "loguniform_int", "with_resolver", "ParamResolver", "set_column_names", "OperationWrapper",
    "LocalRunHandle", "CancelledError", "ExperimentInfo", "context_spec", "file_hash", "dir_hash",
}
ERRORS = {
    name
    for name, obj in vars(metalab._errors).items()
    if inspect.isclass(obj) and issubclass(obj, metalab._errors.MetalabError)
}
HEAVY = ("pandas", "numpy", "psycopg", "psycopg_pool", "rich", "click", "pyarrow")


def test_all_is_sorted_and_complete() -> None:
    assert metalab.__all__ == sorted(metalab.__all__)
    assert len(set(metalab.__all__)) == len(metalab.__all__)
    assert set(metalab.__all__) == EXPECTED | ERRORS
    assert "MetalabError" in ERRORS and len(ERRORS) >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED | ERRORS))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(metalab, name)
    assert value is not None
    ns: dict[str, object] = {}
    exec(f"from metalab import {name} as got", ns)
    assert ns["got"] is value


def test_exported_errors_are_the_tree_classes() -> None:
    assert metalab.MetalabError is metalab._errors.MetalabError
    assert issubclass(metalab.NotFoundError, metalab.StoreError)
    assert issubclass(metalab.NotFoundError, KeyError)


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert metalab.__version__ == version("metalab")


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        metalab.no_such_thing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from metalab import no_such_thing", {})
    assert not hasattr(metalab, "_private_missing")


def test_dir_lists_public_names() -> None:
    names = dir(metalab)
    assert set(metalab.__all__) <= set(names)
    assert names == sorted(names)


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_metalab_is_light() -> None:
    assert _loaded_after("import metalab") == []


def test_defining_and_running_needs_no_dataframe_or_database_libraries() -> None:
    loaded = _loaded_after(
        "import metalab\n"
        "metalab.Experiment, metalab.grid, metalab.seeds, metalab.run, metalab.FileStoreConfig"
    )
    assert not {"pandas", "psycopg", "pyarrow"} & set(loaded), loaded


def test_all_matches_the_lazy_table() -> None:
    assert set(metalab.__all__) == {"__version__", *metalab._LAZY}
