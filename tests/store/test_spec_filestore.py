"""Every FileStore / config / locator snippet of the storage spec runs as written.

Snippets are executed in one namespace per test (like a reader typing them into
one session), in a fresh working directory.  Snippets that need ``metalab.run``,
``load_results`` or PostgreSQL are covered by the tests of those parts.
"""

from __future__ import annotations

import os
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalab._errors import ExperimentMismatchError, ScopeError
from metalab.store import ConfigRegistry, FileStore, FileStoreConfig, create_store
from metalab.testing import make_record


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A namespace to exec snippets in, inside a real module, cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("spec_snippets")
    sys.modules[module.__name__] = module
    try:
        yield module.__dict__
    finally:
        del sys.modules[module.__name__]


def run(ns: dict[str, Any], code: str) -> None:
    exec(compile(textwrap.dedent(code), "<spec snippet>", "exec"), ns)


def test_store_configuration(session: dict[str, Any], tmp_path: Path) -> None:
    run(session, """
        from metalab.store import FileStoreConfig
        # Create a config (doesn't connect yet)
        config = FileStoreConfig(root="./experiments")
        # Scope to an experiment (creates subdirectory)
        scoped = config.scoped("my_exp:1.0")
        # Connect to get a usable store
        store = scoped.connect()
    """)
    store = session["store"]
    assert isinstance(store, FileStore)
    assert store.experiment_id == "my_exp:1.0"
    assert session["config"].root == str(tmp_path / "experiments")
    # connecting is not writing: nothing on disk yet
    assert not (tmp_path / "experiments").exists()
    store.put_run_record(make_record("r1", experiment_id="my_exp:1.0"))
    assert store.get_working_directory() == str(tmp_path / "experiments" / "my_exp_1.0")
    assert (tmp_path / "experiments" / "my_exp_1.0" / "runs" / "r1.json").is_file()


def test_filestore_default_config(session: dict[str, Any], tmp_path: Path) -> None:
    run(session, """
        from metalab.store import FileStoreConfig
        # Explicit config (equivalent)
        config = FileStoreConfig(root="./experiments")
    """)
    assert session["config"].scoped("my_exp:1.0").connect().get_working_directory() == str(
        tmp_path / "experiments" / "my_exp_1.0"
    )


def test_browsing_collections(session: dict[str, Any], tmp_path: Path) -> None:
    for eid in ("my_exp:1.0", "my_exp:2.0", "other_exp:1.0"):
        FileStoreConfig(root="./experiments", experiment_id=eid).connect().put_run_record(
            make_record("r1", experiment_id=eid)
        )
    run(session, """
        from metalab.store import FileStoreConfig
        # Create an unscoped config (collection root)
        collection = FileStoreConfig(root="./experiments")
        # List all experiments in the collection
        experiments = collection.list_experiments()
        # ['my_exp:1.0', 'my_exp:2.0', 'other_exp:1.0']
        # Get config for a specific experiment
        config = collection.for_experiment("my_exp:1.0")
    """)
    assert session["experiments"] == ["my_exp:1.0", "my_exp:2.0", "other_exp:1.0"]
    config = session["config"]
    assert config == FileStoreConfig(root=str(tmp_path / "experiments"), experiment_id="my_exp:1.0")
    assert [r.run_id for r in config.connect().list_run_records()] == ["r1"]
    # only unscoped configs list experiments
    with pytest.raises(ScopeError, match="unscoped"):
        config.list_experiments()


def test_creating_stores_programmatically(session: dict[str, Any], tmp_path: Path) -> None:
    run(session, """
        from metalab.store import create_store, FileStoreConfig, parse_to_config
        # URI-based (convenience)
        store = create_store("./runs/my_exp")
        store = create_store("file:///absolute/path")
        # Config-based (recommended for programmatic use)
        config = FileStoreConfig(root="./runs/my_exp")
        store = config.connect()
    """)
    assert session["store"] == create_store(str(tmp_path / "runs" / "my_exp"))
    assert session["store"].get_working_directory() == str(tmp_path / "runs" / "my_exp")
    assert create_store("file:///absolute/path").config.root == "/absolute/path"
    assert not Path("/absolute/path").exists()  # connecting created nothing
    # parse_to_config + scoped + connect, with a file locator
    run(session, """
        config = parse_to_config("file:///data?experiment_id=my_exp:1.0")
        other = parse_to_config("./runs").scoped("my_exp:1.0")
        store = other.connect()
    """)
    assert session["config"] == FileStoreConfig(root="/data", experiment_id="my_exp:1.0")
    assert session["store"].get_working_directory() == str(tmp_path / "runs" / "my_exp_1.0")


def test_config_serialization(session: dict[str, Any], tmp_path: Path) -> None:
    run(session, """
        from metalab.store import FileStoreConfig, StoreConfig
        config = FileStoreConfig(root="./experiments", experiment_id="my_exp:1.0")
        # Serialize to dict
        d = config.to_dict()
        # {'root': '/abs/path/to/experiments', 'experiment_id': 'my_exp:1.0', '_type': 'file'}
        # Deserialize back
        restored = StoreConfig.from_dict(d)
        assert restored == config
    """)
    d = session["d"]
    assert d == {"root": str(tmp_path / "experiments"), "experiment_id": "my_exp:1.0",
                 "_type": "file"}
    assert list(d) == ["root", "experiment_id", "_type"]


def test_custom_store_registers_itself(
    session: dict[str, Any], restore_registry: None
) -> None:
    run(session, """
        from metalab.store import create_store
    """)
    run(session, """
        from dataclasses import dataclass
        from typing import ClassVar, Any
        from metalab.store import StoreConfig
        from metalab.store.locator import LocatorInfo

        @dataclass(frozen=True, kw_only=True)
        class MyCustomStoreConfig(StoreConfig):
            # scheme is used for URI parsing and auto-registration
            scheme: ClassVar[str] = "myscheme"
            # Your config fields
            endpoint: str
            bucket: str
            experiment_id: str | None = None

            def connect(self) -> "MyCustomStore":
                return MyCustomStore(self)

            @classmethod
            def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> "MyCustomStoreConfig":
                # Parse from URI like "myscheme://endpoint/bucket"
                return cls(
                    endpoint=info.host,
                    bucket=info.path.lstrip("/"),
                    experiment_id=kwargs.get("experiment_id"),
                )

        class MyCustomStore:
            def __init__(self, config: MyCustomStoreConfig):
                self.config = config
                # Connect to your backend...
            # Implement Store protocol methods...

        # Auto-registered! Now usable via create_store
        store = create_store("myscheme://my-endpoint/my-bucket")
    """)
    store = session["store"]
    assert type(store).__name__ == "MyCustomStore"
    assert store.config.endpoint == "my-endpoint"
    assert store.config.bucket == "my-bucket"
    assert store.config.experiment_id is None
    cls = session["MyCustomStoreConfig"]
    assert ConfigRegistry.get("myscheme") is cls
    assert create_store("myscheme://e/b", experiment_id="x:1").config.experiment_id == "x:1"
    cfg = cls(endpoint="e", bucket="b")
    assert cfg.to_dict() == {"experiment_id": None, "endpoint": "e", "bucket": "b",
                             "_type": "myscheme"}


def test_registry_fixture_undid_custom_scheme() -> None:
    assert "myscheme" not in ConfigRegistry.known()


def test_experiment_mismatch_same_folder(tmp_path: Path) -> None:
    a = FileStoreConfig(root=str(tmp_path), experiment_id="a:b").connect()
    a.put_run_record(make_record("r1", experiment_id="a:b"))
    with pytest.raises(ExperimentMismatchError) as info:
        FileStoreConfig(root=str(tmp_path), experiment_id="a_b").connect()
    msg = str(info.value)
    assert "'a:b'" in msg and "'a_b'" in msg and "rename" in msg


def test_experiment_mismatch_detected_before_first_write(tmp_path: Path) -> None:
    b = FileStoreConfig(root=str(tmp_path), experiment_id="a_b").connect()  # nothing on disk yet
    FileStoreConfig(root=str(tmp_path), experiment_id="a:b").connect().put_derived("r", {"x": 1})
    with pytest.raises(ExperimentMismatchError):
        b.put_run_record(make_record("r1", experiment_id="a_b"))
    assert not (tmp_path / "a_b" / "runs").exists()


def test_pathlike_root(tmp_path: Path) -> None:
    cfg = FileStoreConfig(root=tmp_path / "x")  # type: ignore[arg-type]
    assert cfg.root == str(tmp_path / "x")
    assert os.path.isabs(FileStoreConfig(root="~/x").root)
