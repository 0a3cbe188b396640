"""Capabilities that mean something: read-only stores refuse writes (one guard for
every backend), ``rebuild_index`` behind ``supports_index``, and the one
``metalab store rebuild-index`` command (``reindex`` kept as a hidden alias)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pytest
from click.testing import CliRunner

from metalab import ConfigError, MetalabError, StoreError
from metalab.cli import cli
from metalab.model import ArtifactDescriptor, RunRecord, Status
from metalab.store import FileStore, FileStoreConfig, Store, StoreConfig, make_store
from metalab.store._base import ReadOnlyStoreError
from metalab.store.locator import LocatorInfo
from metalab.testing import make_record


def _fill(store: Store, n: int, experiment_id: str = "e:1") -> None:
    for i in range(n):
        store.put_run_record(make_record(f"r{i}", experiment_id=experiment_id, params={"i": i}))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and mtime."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.stat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


# ------------------------------------------------------------------ read-only FileStore
def test_a_read_only_filestore_is_opened_by_config_locator_or_option(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    _fill(FileStore(str(root), "e:1"), 2)
    by_option = make_store(str(root), read_only=True)
    by_locator = make_store(f"file://{root}?read_only=true")
    by_config = FileStoreConfig(root=str(root), read_only=True).connect()
    for ro in (by_option, by_locator, by_config):
        assert ro.read_only
        assert sorted(r.run_id for r in ro.list_run_records()) == ["r0", "r1"]
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            ro.put_run_record(make_record("r9", experiment_id="e:1"))
    assert not make_store(f"file://{root}?read_only=false").read_only
    assert not make_store(str(root)).read_only
    with pytest.raises(ConfigError, match="read_only"):
        make_store(f"file://{root}?read_only=maybe")
    with pytest.raises(ConfigError, match="read_only"):
        FileStoreConfig(root=str(root), read_only="yes")  # type: ignore[arg-type]


def test_read_only_survives_scoping_pickling_and_workers(tmp_path: Path) -> None:
    ro_cfg = FileStoreConfig(root=str(tmp_path), read_only=True)
    scoped = ro_cfg.scoped("e:1")
    assert isinstance(scoped, FileStoreConfig) and scoped.read_only
    assert StoreConfig.from_dict(scoped.to_dict()) == scoped
    assert scoped.to_dict()["read_only"] is True
    # a writable config's dict is as it always was (workers of older versions read it)
    assert FileStoreConfig(root=str(tmp_path), experiment_id="e:1").to_dict() == {
        "root": str(tmp_path), "experiment_id": "e:1", "_type": "file"}
    import pickle

    clone = pickle.loads(pickle.dumps(scoped.connect()))
    assert clone.read_only
    with pytest.raises(ReadOnlyStoreError):
        clone.append_log("r1", "run", "x")
    assert not (tmp_path / "e_1").exists()  # nothing was created


def test_the_error_is_a_store_error_naming_the_store_and_the_method(tmp_path: Path) -> None:
    ro = FileStore(FileStoreConfig(root=str(tmp_path), experiment_id="e:1", read_only=True))
    with pytest.raises(MetalabError) as info:
        ro.put_derived("r1", {"a": 1})
    err = info.value
    assert isinstance(err, ReadOnlyStoreError) and isinstance(err, StoreError)
    assert err.method == "put_derived"
    assert str(tmp_path) in str(err) and "put_derived()" in str(err)
    assert "read_only=True" in repr(ro)


def test_a_read_only_filestore_writes_nothing_while_it_reads(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    for eid in ("a:1", "b:1"):
        _fill(FileStore(str(root), eid), 3, eid)
    (root / "b_1" / "_meta.json").unlink()  # (a writable store rebuilds it when listing)
    before = _tree(root)
    ro = make_store(str(root), read_only=True)
    assert ro.list_experiments() == ["a:1", "b:1"]
    assert len(ro.query_runs(where="params.i >= 1")) == 4
    scoped = make_store(ro, experiment_id="a:1")
    assert scoped.read_only
    assert [d["run_id"] for d in scoped.query_runs(where="params.i = 2")] == ["r2"]
    assert len(list(ro.iter_run_documents())) == 6
    assert _tree(root) == before  # no catalog, no _meta.json, no change hint
    writable = make_store(str(root))
    assert len(writable.query_runs(where="params.i >= 1")) == 4
    assert _tree(root) != before  # (the check above can see a write)


def test_a_read_only_filestore_refuses_the_claim_methods_it_gets_from_its_mixin(
    tmp_path: Path,
) -> None:
    """FileStore's claims live in a mixin (FileClaims): the guard must cover them too."""
    root = tmp_path / "lab"
    _fill(FileStore(str(root), "a:1"), 1, "a:1")
    before = _tree(root)
    ro = make_store(str(root), experiment_id="a:1", read_only=True)
    for call in (lambda: ro.try_claim("r0", "me", 60.0), lambda: ro.touch_heartbeat("r0", "me"),
                 lambda: ro.release_claim("r0", "me")):
        with pytest.raises(ReadOnlyStoreError):
            call()
    assert _tree(root) == before
    assert FileStore(str(root), "a:1").try_claim("r0", "me", 60.0)  # (writable: granted)


def test_results_of_a_read_only_store_keep_derived_metrics_in_memory(tmp_path: Path) -> None:
    from metalab import load_results

    root = tmp_path / "lab"
    _fill(FileStore(str(root), "e:1"), 2)
    results = load_results(make_store(str(root), experiment_id="e:1", read_only=True))
    results.compute_derived([lambda run: {"twice": run.params["i"] * 2}])
    assert sorted(r.derived["twice"] for r in results) == [0, 2]
    assert not (root / "e_1" / "derived").exists()


# ------------------------------------------------------------------ one guard for every store
@dataclasses.dataclass(frozen=True, kw_only=True)
class CapTestConfig(StoreConfig):
    """A minimal in-memory store: no index, no claims, optionally read-only."""

    scheme: ClassVar[str] = "captest"
    read_only: bool = False

    def connect(self) -> CapTestStore:
        return CapTestStore(self)

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> CapTestConfig:
        return cls(read_only=info.query.get("read_only") == "true", **kwargs)


class CapTestStore(Store):
    """Writes into a dict; has no read-only check of its own (the base adds it)."""

    def __init__(self, config: CapTestConfig) -> None:
        self._config = config
        self.records: dict[str, RunRecord] = {}
        self.writes = 0

    @property
    def config(self) -> CapTestConfig:
        return self._config

    @property
    def read_only(self) -> bool:
        return self._config.read_only

    def put_run_record(self, record: RunRecord, *, durable: bool = True) -> None:
        self.writes += 1
        self.records[record.run_id] = record

    def get_run_record(self, run_id: str) -> RunRecord | None:
        return self.records.get(run_id)

    def iter_run_documents(self, experiment_id: str | None = None, *,
                           on_error: Any = None) -> Iterator[dict[str, Any]]:
        return (r.to_dict() for r in self.records.values())

    def delete_run(self, run_id: str) -> None:
        self.writes += 1
        self.records.pop(run_id, None)

    def put_artifact(self, run_id: str, name: str, source: Any, *, kind: str, format: str,
                     metadata: dict[str, Any] | None = None) -> ArtifactDescriptor:
        raise AssertionError("not reached")

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        return []

    def open_artifact(self, run_id: str, name: str) -> BinaryIO:
        raise AssertionError("not reached")

    def append_log(self, run_id: str, name: str, text: str) -> None:
        self.writes += 1

    def get_log(self, run_id: str, name: str = "run") -> str | None:
        return None

    def list_logs(self, run_id: str) -> list[str]:
        return []

    def put_data(self, run_id: str, name: str, payload: dict[str, Any]) -> None:
        self.writes += 1

    def get_data(self, run_id: str, name: str) -> dict[str, Any] | None:
        return None

    def list_data(self, run_id: str) -> list[str]:
        return []

    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        self.writes += 1

    def get_derived(self, run_id: str) -> dict[str, Any] | None:
        return None

    def put_experiment_manifest(self, experiment_id: str, manifest: dict[str, Any],
                                timestamp: datetime | None = None) -> None:
        self.writes += 1

    def list_experiment_manifests(self, experiment_id: str) -> list[tuple[datetime, Any]]:
        return []

    def list_experiments(self) -> list[str]:
        return sorted({r.experiment_id for r in self.records.values()})


def test_a_custom_store_gets_the_read_only_guard_without_code_of_its_own() -> None:
    ro = CapTestConfig(read_only=True).connect()
    rec = RunRecord(run_id="r1", experiment_id="e:1", status=Status.SUCCESS)
    for call in (lambda: ro.put_run_record(rec), lambda: ro.delete_run("r1"),
                 lambda: ro.append_log("r1", "run", "x"), lambda: ro.put_data("r1", "d", {}),
                 lambda: ro.put_derived("r1", {}),
                 lambda: ro.put_experiment_manifest("e:1", {}),
                 lambda: ro.try_claim("r1", "me", 60.0)):  # (a default of Store itself)
        with pytest.raises(ReadOnlyStoreError):
            call()
    assert ro.writes == 0 and ro.records == {}
    rw = CapTestConfig().connect()
    rw.put_run_record(rec)
    assert rw.writes == 1 and rw.try_claim("r1", "me", 60.0)  # (no claims: always granted)


def test_a_store_without_an_index_has_no_rebuild_index() -> None:
    store = CapTestConfig().connect()
    assert not store.supports_index
    with pytest.raises(NotImplementedError, match="no query index"):
        store.rebuild_index()


# ------------------------------------------------------------------ the CLI command
def test_rebuild_index_of_a_filestore_and_of_one_experiment(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    _fill(FileStore(str(root), "a:1"), 4, "a:1")
    _fill(FileStore(str(root), "b:1"), 2, "b:1")
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "-s", str(root)])
    assert result.exit_code == 0, result.output
    assert "(all experiments): 6 files read" in result.output
    assert (root / "a_1" / ".catalog").is_dir() and (root / "b_1" / ".catalog").is_dir()
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "-s", str(root), "-e", "b:1"])
    assert result.exit_code == 0, result.output
    assert "(experiment b:1): 2 files read" in result.output
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "-s", str(root), "-e", "c:1"])
    assert result.exit_code == 1
    assert "'c:1' is not in this store" in result.output


def test_reindex_is_a_hidden_alias_of_rebuild_index(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    _fill(FileStore(str(root), "a:1"), 3, "a:1")
    result = CliRunner().invoke(cli, ["store", "reindex", "--store", str(root), "-e", "a:1"])
    assert result.exit_code == 0, result.output
    assert "(experiment a:1): 3 files read" in result.output
    listing = CliRunner().invoke(cli, ["store", "--help"]).output
    assert "rebuild-index" in listing and "reindex" not in listing
    assert "rebuild-index" in CliRunner().invoke(cli, ["store", "reindex", "--help"]).output


def test_rebuild_index_of_a_read_only_store_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    _fill(FileStore(str(root), "a:1"), 1, "a:1")
    result = CliRunner().invoke(
        cli, ["store", "rebuild-index", "-s", f"file://{root}?read_only=true"])
    assert result.exit_code == 1
    assert "Error:" in result.output and "read-only" in result.output
    assert not (root / "a_1" / ".catalog").exists()


def test_rebuild_index_of_a_store_without_an_index_does_nothing(
    restore_registry: None,
) -> None:
    from metalab.store import ConfigRegistry

    ConfigRegistry.register(CapTestConfig, overwrite=True)
    result = CliRunner().invoke(cli, ["store", "rebuild-index", "-s", "captest://x"])
    assert result.exit_code == 0, result.output
    assert "keeps no query index; nothing to do" in result.output
