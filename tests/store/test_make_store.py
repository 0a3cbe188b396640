"""``make_store``: the one rule turning None, a path, a locator, a config or a store into a store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metalab
from metalab._errors import (
    ConfigError,
    MetalabError,
    NotFoundError,
    ScopeError,
    UnknownSchemeError,
    ValidationError,
)
from metalab.store import (
    DEFAULT_STORE_ROOT,
    FileStore,
    FileStoreConfig,
    StoreConfig,
    export_store,
    make_store,
    parse_to_config,
)
from metalab.store.locator import LocatorInfo
from metalab.testing import make_record

EXP = "demo:1"


@metalab.operation
def double(params: Any, seeds: Any, capture: Any) -> None:
    capture.metric("y", params["x"] * 2)


def _experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="demo", version="1", context={}, operation=double,
        params=metalab.grid(x=[1, 2]), seeds=metalab.seeds(base=1, replicates=1),
    )


# ------------------------------------------------------------------ None
def test_none_is_the_default_folder_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_STORE_ROOT == "./experiments"
    store = make_store(None)
    assert isinstance(store, FileStore)
    assert store.config == FileStoreConfig(root=str(Path.cwd() / "experiments"))
    make_store(None, experiment_id=EXP).put_run_record(make_record("r1", experiment_id=EXP))
    assert list((tmp_path / "experiments").rglob("r1.json")), "the record is under ./experiments"


def test_none_means_the_same_folder_for_run_load_results_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    handle = metalab.run(_experiment())  # store=None
    assert len(handle.result()) == 2
    assert (tmp_path / "experiments").is_dir()
    results = metalab.load_results(None, experiment_id=EXP)
    assert sorted(r.metrics["y"] for r in results) == [2, 4]
    report = export_store(None, tmp_path / "copy")
    assert report.runs == 2
    assert len(metalab.load_results(tmp_path / "copy", experiment_id=EXP)) == 2


def test_none_with_must_exist_names_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match=r"no store at \./experiments"):
        make_store(None, must_exist=True)
    with pytest.raises(NotFoundError, match=r"no store at \./experiments"):
        metalab.load_results(None)


# ----------------------------------------------------------------- Store
def test_store_passes_through_as_the_same_object(tmp_path: Path) -> None:
    collection = FileStoreConfig(root=str(tmp_path)).connect()
    assert make_store(collection) is collection
    scoped = collection.config.scoped(EXP).connect()
    assert make_store(scoped) is scoped
    assert make_store(scoped, experiment_id=EXP) is scoped  # already scoped to it


def test_store_is_scoped_by_a_new_connection(tmp_path: Path) -> None:
    collection = FileStoreConfig(root=str(tmp_path)).connect()
    scoped = make_store(collection, experiment_id=EXP)
    assert scoped is not collection
    assert scoped.config == collection.config.scoped(EXP)
    scoped.put_run_record(make_record("r1", experiment_id=EXP))
    assert collection.list_experiments() == [EXP]
    assert collection.experiment_id is None  # the given store is left as it was


def test_store_scoped_to_another_experiment_is_an_error(tmp_path: Path) -> None:
    scoped = FileStoreConfig(root=str(tmp_path), experiment_id="a:1").connect()
    with pytest.raises(ScopeError, match="'a:1'"):
        make_store(scoped, experiment_id="b:1")


# ---------------------------------------------------------------- config
def test_config_is_connected(tmp_path: Path) -> None:
    cfg = FileStoreConfig(root=str(tmp_path))
    store = make_store(cfg)
    assert isinstance(store, FileStore)
    assert store.config == cfg
    assert make_store(cfg) is not store  # a new connection each time
    assert make_store(cfg, experiment_id=EXP).config == cfg.scoped(EXP)
    with pytest.raises(ScopeError):
        make_store(cfg.scoped("a:1"), experiment_id="b:1")


def test_config_options_replace_fields(tmp_path: Path) -> None:
    cfg = FileStoreConfig(root=str(tmp_path / "a"))
    assert make_store(cfg, root=str(tmp_path / "b")).config.root == str(tmp_path / "b")
    with pytest.raises(ConfigError, match="no field"):
        make_store(cfg, nonsense=1)


# ------------------------------------------------------ paths and locators
def test_path_string_and_pathlike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert make_store("runs").config == FileStoreConfig(root=str(tmp_path / "runs"))
    assert make_store(tmp_path / "runs").config == FileStoreConfig(root=str(tmp_path / "runs"))
    assert make_store("runs", experiment_id=EXP).config == FileStoreConfig(
        root=str(tmp_path / "runs"), experiment_id=EXP
    )
    assert not (tmp_path / "runs").exists()  # opening creates nothing


def test_file_uri(tmp_path: Path) -> None:
    store = make_store(f"file://{tmp_path}/lab?experiment_id={EXP}")
    assert store.config == FileStoreConfig(root=str(tmp_path / "lab"), experiment_id=EXP)
    with pytest.raises(ScopeError):
        make_store(f"file://{tmp_path}/lab?experiment_id={EXP}", experiment_id="other:1")


def test_registered_scheme(restore_registry: None) -> None:
    opened: list[StoreConfig] = []

    @dataclass(frozen=True, kw_only=True)
    class MemConfig(StoreConfig):
        scheme: ClassVar[str] = "memtest"
        bucket: str = ""
        experiment_id: str | None = None

        def connect(self) -> Any:
            opened.append(self)
            return ("connected", self)

        @classmethod
        def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> MemConfig:
            return cls(bucket=info.path.lstrip("/"), experiment_id=kwargs.get("experiment_id"))

    got = make_store("memtest://host/b1", experiment_id=EXP)
    assert got == ("connected", MemConfig(bucket="b1", experiment_id=EXP))
    assert opened == [MemConfig(bucket="b1", experiment_id=EXP)]


def test_postgres_locator_gives_a_postgres_config(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from metalab.store import PostgresStoreConfig
    from metalab.store._factory import make_config

    cfg = make_config(f"postgresql://u@h/db?file_root={tmp_path}", experiment_id=EXP)
    assert isinstance(cfg, PostgresStoreConfig)
    assert cfg.experiment_id == EXP


def test_unknown_scheme_is_an_error_naming_it() -> None:
    with pytest.raises(UnknownSchemeError, match="nosuchscheme"):
        make_store("nosuchscheme://host/x")


@pytest.mark.parametrize("bad", [42, b"/tmp/x", ["./experiments"], 1.5, object()])
def test_other_types_are_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        make_store(bad)
    assert isinstance(info.value, MetalabError)
    message = str(info.value)
    assert type(bad).__name__ in message
    for accepted in ("None", "path", "locator", "StoreConfig", "Store"):
        assert accepted in message


# ------------------------------------------------------------ must_exist
def test_must_exist_on_a_missing_folder_names_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match=r"no store at \./typo") as info:
        make_store("./typo", must_exist=True)
    assert str(tmp_path / "typo") in str(info.value)
    assert not (tmp_path / "typo").exists()
    make_store("./typo")  # a writer may name a folder that does not exist yet
    (tmp_path / "typo").mkdir()
    assert make_store("./typo", must_exist=True).config.root == str(tmp_path / "typo")


def test_must_exist_applies_to_configs_and_stores(tmp_path: Path) -> None:
    cfg = FileStoreConfig(root=str(tmp_path / "gone"))
    with pytest.raises(NotFoundError, match="gone"):
        make_store(cfg, must_exist=True)
    with pytest.raises(NotFoundError, match="gone"):
        make_store(cfg.connect(), must_exist=True)


# -------------------------------------------------------------- property
_name = st.from_regex(r"[A-Za-z0-9_.\- ]{1,10}", fullmatch=True).filter(
    lambda s: s.strip() not in ("", ".", "..")  # (a blank locator is an error of its own)
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    parts=st.lists(_name, min_size=1, max_size=3),
    experiment_id=st.none() | st.from_regex(r"[A-Za-z0-9_]{1,8}:[0-9]{1,3}", fullmatch=True),
)
def test_path_and_its_config_give_the_same_store(
    parts: list[str], experiment_id: str | None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = os.path.join(*parts)
    from_path = make_store(path, experiment_id=experiment_id)
    from_config = make_store(parse_to_config(path), experiment_id=experiment_id)
    assert from_path.config == from_config.config
    assert from_path.config.root == os.path.join(os.getcwd(), path)
    assert from_path.config.experiment_id == experiment_id
    assert make_store(Path(path), experiment_id=experiment_id).config == from_path.config
