"""A contract test suite every :class:`~metalab.store.Store` backend must pass.

Use it from a backend's test module::

    from metalab.testing import FileRaw, StoreContractTests

    class TestMyStore(StoreContractTests):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStoreConfig(..., experiment_id=CONTRACT_EXPERIMENT).connect()

        @pytest.fixture
        def raw(self, store):
            return MyRaw(store)       # a RawAccess reading the medium directly

``store`` must be a fresh, empty store scoped to :data:`CONTRACT_EXPERIMENT`;
``raw`` gives access to the storage medium *without* going through the store,
so the tests check what really was written.

The capability tests follow the store's ``supports_*`` flags: a flag that is
set must deliver (``supports_index``: :meth:`~metalab.store.Store.rebuild_index`
rebuilds, ``supports_claims``: a claim keeps a second owner out), one that is
not set must refuse (``NotImplementedError``) or, for claims, always grant.
The read-only tests use the ``read_only_store`` fixture: by default the same
store reconnected from its config with ``read_only=True`` when the config has
such a field, else they are skipped; override it for another way.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metalab._errors import (
    CorruptRecordError,
    InvalidNameError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreError,
)
from metalab._internal._atomic import is_temp_name
from metalab._internal._json import loads
from metalab.model import RunRecord, Status
from metalab.store import WRITE_METHODS, Store
from metalab.testing._curate_contract import CurationContractTests

__all__ = ["CONTRACT_EXPERIMENT", "FileRaw", "RawAccess", "StoreContractTests", "make_record"]

CONTRACT_EXPERIMENT = "contract:1"
BAD_NAMES = ["..", ".", "a/b", "a\\b", "a\x00b", "", ".hidden"]


def make_record(run_id: str, experiment_id: str = CONTRACT_EXPERIMENT, **kw: Any) -> RunRecord:
    """A small, complete run record for tests."""
    fields: dict[str, Any] = {
        "status": Status.SUCCESS,
        "params": {"x": 1, "name": "a"},
        "seed": {"root_seed": 0, "replicate_index": 0},
        "metrics": {"loss": 0.5},
        "started_at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        "duration_ms": 876.5,
    }
    fields.update(kw)
    return RunRecord(run_id=run_id, experiment_id=experiment_id, **fields)


class RawAccess:
    """Direct access to a backend's storage medium (bypasses the store).

    Backends subclass it; the contract tests call only these methods.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def run_document(self, run_id: str) -> dict[str, Any] | None:
        """The stored run record document, read from the medium."""
        raise NotImplementedError

    def corrupt_run(self, run_id: str) -> str:
        """Store a truncated record for ``run_id``; return where it lives."""
        raise NotImplementedError

    def artifact_bytes(self, uri: str) -> bytes:
        """The bytes stored at an artifact descriptor's ``uri``."""
        raise NotImplementedError

    def log_text(self, run_id: str, name: str) -> str | None:
        raise NotImplementedError

    def temp_files(self) -> list[str]:
        """In-flight temp files left on the medium."""
        raise NotImplementedError

    def relocated(self, dest: str) -> Store:
        """Copy the experiment's data to a new place (``dest``); return a store on it."""
        raise NotImplementedError


class FileRaw(RawAccess):
    """:class:`RawAccess` for :class:`~metalab.store.FileStore`: reads files under its folder."""

    @property
    def folder(self) -> Path:
        return Path(self.store.get_working_directory())

    def run_document(self, run_id: str) -> dict[str, Any] | None:
        path = self.folder / "runs" / f"{run_id}.json"
        return loads(path.read_bytes()) if path.exists() else None

    def corrupt_run(self, run_id: str) -> str:
        path = self.folder / "runs" / f"{run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'{"run_id": "' + run_id.encode() + b'", "stat')
        return str(path)

    def artifact_bytes(self, uri: str) -> bytes:
        if os.path.isabs(uri):
            raise AssertionError(f"artifact uri {uri!r} is absolute; it must be relative")
        return (self.folder / uri).read_bytes()

    def log_text(self, run_id: str, name: str) -> str | None:
        path = self.folder / "logs" / f"{run_id}_{name}.log"
        return path.read_text("utf-8") if path.exists() else None

    def temp_files(self) -> list[str]:
        return [
            os.path.join(d, f)
            for d, _dirs, files in os.walk(self.folder)
            for f in files
            if is_temp_name(f)
        ]

    def relocated(self, dest: str) -> Store:
        cfg = self.store.config
        new_root = Path(dest)
        shutil.copytree(self.folder, new_root / self.folder.name)
        moved = type(cfg).from_dict({**cfg.to_dict(), "root": str(new_root)})
        store: Store = moved.connect()
        return store


class StoreContractTests(CurationContractTests):
    """Behaviour every store must show.  Override the ``store`` and ``raw`` fixtures."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("override the 'store' fixture: a fresh store scoped to "
                                  f"{CONTRACT_EXPERIMENT!r}")

    @pytest.fixture
    def raw(self, store: Store) -> RawAccess:
        raise NotImplementedError("override the 'raw' fixture with a RawAccess for the backend")

    @pytest.fixture
    def read_only_store(self, store: Store) -> Iterator[Store]:
        """``store``'s data opened read-only (skipped if its config has no ``read_only``)."""
        cfg = store.config
        if "read_only" not in {f.name for f in dataclasses.fields(cfg)}:
            pytest.skip(f"{type(cfg).__name__} has no read_only field")
        ro: Store = dataclasses.replace(cfg, read_only=True).connect()  # type: ignore[call-arg]
        yield ro
        ro.close()

    # ---------------------------------------------------------------- records
    def test_scoped_fixture(self, store: Store) -> None:
        assert store.experiment_id == CONTRACT_EXPERIMENT
        assert store.is_scoped

    def test_record_round_trip(self, store: Store, raw: RawAccess) -> None:
        rec = make_record("r1", tags=("a", "b"), data=("d",), series=("s",))
        store.put_run_record(rec)
        assert store.get_run_record("r1") == rec
        assert raw.run_document("r1") == rec.to_dict()
        assert store.run_exists("r1")
        assert not store.run_exists("r2")
        assert store.get_run_record("r2") is None

    def test_record_replace(self, store: Store) -> None:
        store.put_run_record(make_record("r1", status=Status.RUNNING))
        done = make_record("r1", status=Status.FAILED, metrics={"loss": 9})
        store.put_run_record(done)
        assert store.get_run_record("r1") == done
        assert [r.status for r in store.list_run_records()] == [Status.FAILED]

    def test_record_not_durable_is_still_read_back(self, store: Store, raw: RawAccess) -> None:
        # what a worker does: the running record without durability, then the final one
        running = make_record("r1", status=Status.RUNNING)
        store.put_run_record(running, durable=False)
        assert store.get_run_record("r1") == running
        assert raw.run_document("r1") == running.to_dict()
        done = make_record("r1", status=Status.SUCCESS, metrics={"loss": 1})
        store.put_run_record(done, durable=True)
        assert store.get_run_record("r1") == done
        assert [r.status for r in store.list_run_records()] == [Status.SUCCESS]

    def test_list_records(self, store: Store) -> None:
        recs = {f"r{i}": make_record(f"r{i}", params={"i": i}) for i in range(5)}
        for r in recs.values():
            store.put_run_record(r)
        listed = {r.run_id: r for r in store.list_run_records()}
        assert listed == recs
        docs = list(store.iter_run_documents())
        assert sorted(d["run_id"] for d in docs) == sorted(recs)
        assert list(store.iter_run_documents("other:1")) == []

    def test_scoping_two_experiments(self, store: Store) -> None:
        collection = store.config.unscoped()
        other = collection.for_experiment("contract:2").connect()
        try:
            store.put_run_record(make_record("mine"))
            other.put_run_record(make_record("theirs", experiment_id="contract:2"))
            assert [r.run_id for r in store.list_run_records()] == ["mine"]
            assert [r.run_id for r in other.list_run_records()] == ["theirs"]
            assert sorted(collection.list_experiments()) == ["contract:1", "contract:2"]
            assert store.list_experiments() == ["contract:1"]
        finally:
            other.close()

    def test_corrupt_record_reported_and_skipped(self, store: Store, raw: RawAccess) -> None:
        store.put_run_record(make_record("good"))
        where = raw.corrupt_run("bad")
        errors: list[CorruptRecordError] = []
        runs = store.list_run_records(on_error=errors.append)
        assert [r.run_id for r in runs] == ["good"]
        assert len(errors) == 1
        assert errors[0].path == where
        assert where in str(errors[0])
        with pytest.raises(CorruptRecordError):
            store.get_run_record("bad")

    def test_delete_run(self, store: Store) -> None:
        store.put_run_record(make_record("r1"))
        store.put_run_record(make_record("r2"))
        store.put_derived("r1", {"a": 1})
        store.put_data("r1", "d", {"data": [1]})
        store.append_log("r1", "run", "hello\n")
        store.put_artifact("r1", "blob", b"xyz", kind="file", format="bin")
        store.delete_run("r1")
        assert store.get_run_record("r1") is None
        assert store.get_derived("r1") is None
        assert store.list_data("r1") == []
        assert store.list_logs("r1") == []
        assert store.list_artifacts("r1") == []
        assert store.get_run_record("r2") is not None

    # ---------------------------------------------------------------- artifacts
    def test_artifact_bytes(self, store: Store, raw: RawAccess) -> None:
        payload = bytes(range(256)) * 10
        desc = store.put_artifact("r1", "weights", payload, kind="file", format="bin",
                                  metadata={"k": 1})
        assert desc.name == "weights" and desc.format == "bin" and desc.kind == "file"
        assert desc.size_bytes == len(payload)
        assert len(desc.content_hash) == 64
        assert desc.metadata == {"k": 1}
        assert not os.path.isabs(desc.uri)
        assert raw.artifact_bytes(desc.uri) == payload
        assert store.get_artifact_bytes("r1", "weights") == payload
        assert store.list_artifacts("r1") == [desc]

    def test_artifact_from_path_and_dotted_name(
        self, store: Store, raw: RawAccess, tmp_path: Path
    ) -> None:
        src = tmp_path / "input.csv"
        src.write_bytes(b"a,b\n1,2\n")
        desc = store.put_artifact("r1", "table.v2", src, kind="file", format="csv")
        assert desc.uri.endswith("table.v2.csv")
        assert raw.artifact_bytes(desc.uri) == b"a,b\n1,2\n"
        same = store.put_artifact("r1", "plot.png", b"png", kind="file", format="png")
        assert same.uri.endswith("/plot.png")
        assert sorted(a.name for a in store.list_artifacts("r1")) == ["plot.png", "table.v2"]

    def test_artifact_replace_and_missing(self, store: Store) -> None:
        store.put_artifact("r1", "a", b"one", kind="file", format="txt")
        store.put_artifact("r1", "a", b"two", kind="file", format="txt")
        assert store.get_artifact_bytes("r1", "a") == b"two"
        assert len(store.list_artifacts("r1")) == 1
        with pytest.raises(NotFoundError):
            store.open_artifact("r1", "nope")
        with pytest.raises(NotFoundError):
            store.get_artifact_bytes("r9", "a")

    def test_artifacts_survive_relocation(self, store: Store, raw: RawAccess) -> None:
        store.put_run_record(make_record("r1"))
        store.put_artifact("r1", "a", b"payload", kind="file", format="bin")
        with tempfile.TemporaryDirectory() as dest:
            moved = raw.relocated(dest)
            try:
                assert moved.get_artifact_bytes("r1", "a") == b"payload"
                assert moved.get_run_record("r1") == store.get_run_record("r1")
            finally:
                moved.close()

    # ---------------------------------------------------------------- logs
    def test_logs_append_and_stream(self, store: Store, raw: RawAccess) -> None:
        assert store.get_log("r1") is None
        store.append_log("r1", "run", "line 1\n")
        assert raw.log_text("r1", "run") == "line 1\n"  # visible while the run goes on
        store.append_log("r1", "run", "line 2 é\n")
        store.append_log("r1", "stderr", "oops\n")
        assert store.get_log("r1", "run") == "line 1\nline 2 é\n"
        assert store.list_logs("r1") == ["run", "stderr"]
        assert store.list_logs("r2") == []

    def test_log_path_capability(self, store: Store) -> None:
        if store.supports_log_path:
            path = store.log_path("r1", "direct")
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("written directly\n")
            assert store.get_log("r1", "direct") == "written directly\n"
        else:
            with pytest.raises(NotImplementedError):
                store.log_path("r1", "direct")

    def test_working_directory_capability(self, store: Store) -> None:
        if store.supports_working_directory:
            store.put_run_record(make_record("r1"))
            assert os.path.isdir(store.get_working_directory())
        else:
            with pytest.raises(NotImplementedError):
                store.get_working_directory()

    # ---------------------------------------------------------------- data / derived
    def test_data(self, store: Store) -> None:
        payload = {"kind": "series", "data": {"step": [0, 1], "value": [1.0, 0.5]},
                   "dtype": "float64", "shape": [2], "metadata": {"unit": "s"}}
        store.put_data("r1", "loss", payload)
        store.put_data("r1", "table", {"data": [[1, 2], [3, 4]]})
        assert store.get_data("r1", "loss") == payload
        got = store.get_data("r1", "table")
        assert got is not None and got["data"] == [[1, 2], [3, 4]]
        assert store.list_data("r1") == ["loss", "table"]
        assert store.get_data("r1", "nope") is None
        assert store.list_data("r2") == []

    def test_derived(self, store: Store) -> None:
        assert store.get_derived("r1") is None
        store.put_derived("r1", {"acc": 0.9})
        store.put_derived("r1", {"acc": 0.95, "f1": 0.5})
        assert store.get_derived("r1") == {"acc": 0.95, "f1": 0.5}

    # ---------------------------------------------------------------- manifests
    def test_manifests_newest_last(self, store: Store) -> None:
        eid = CONTRACT_EXPERIMENT
        assert store.get_experiment_manifest(eid) is None
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store.put_experiment_manifest(eid, {"experiment_id": eid, "n": 2}, t0 + timedelta(seconds=5))
        store.put_experiment_manifest(eid, {"experiment_id": eid, "n": 1}, t0)
        store.put_experiment_manifest(eid, {"experiment_id": eid, "n": 3}, t0 + timedelta(seconds=5))
        listed = store.list_experiment_manifests(eid)
        assert [m["n"] for _ts, m in listed] == [1, 2, 3]
        assert listed[0][0] == t0
        assert [ts for ts, _m in listed] == sorted(ts for ts, _m in listed)
        assert store.get_experiment_manifest(eid) == {"experiment_id": eid, "n": 3}

    # ---------------------------------------------------------------- names
    @pytest.mark.parametrize("bad", BAD_NAMES)
    def test_bad_names_refused(self, store: Store, raw: RawAccess, bad: str) -> None:
        with pytest.raises(InvalidNameError):
            store.put_artifact("r1", bad, b"x", kind="file", format="bin")
        with pytest.raises(InvalidNameError):
            store.put_artifact(bad, "a", b"x", kind="file", format="bin")
        with pytest.raises(InvalidNameError):
            store.append_log("r1", bad, "x")
        with pytest.raises(InvalidNameError):
            store.put_data("r1", bad, {"data": 1})
        with pytest.raises(InvalidNameError):
            store.put_run_record(make_record(bad))
        assert store.list_run_records() == []
        assert store.list_artifacts("r1") == []

    def test_reserved_artifact_name(self, store: Store) -> None:
        with pytest.raises(InvalidNameError):
            store.put_artifact("r1", "_manifest", b"x", kind="file", format="json")

    # ---------------------------------------------------------------- atomicity / identity
    def test_no_temp_files_left(self, store: Store, raw: RawAccess, tmp_path: Path) -> None:
        src = tmp_path / "f.bin"
        src.write_bytes(b"123")
        store.put_run_record(make_record("r1"))
        store.put_derived("r1", {"a": 1})
        store.put_data("r1", "d", {"data": 1})
        store.put_artifact("r1", "a", b"x", kind="file", format="bin")
        store.put_artifact("r1", "b", src, kind="file", format="bin")
        store.append_log("r1", "run", "x")
        store.put_experiment_manifest(CONTRACT_EXPERIMENT, {"a": 1})
        assert raw.temp_files() == []

    def test_pickle_round_trip(self, store: Store) -> None:
        store.put_run_record(make_record("r1"))
        clone = pickle.loads(pickle.dumps(store))
        try:
            assert clone == store
            assert clone.config == store.config
            assert clone.get_run_record("r1") == store.get_run_record("r1")
        finally:
            clone.close()

    def test_config_round_trip(self, store: Store) -> None:
        cfg = store.config
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        again = cfg.connect()
        try:
            assert again == store
        finally:
            again.close()

    # ---------------------------------------------------------------- capabilities
    def test_index_capability(self, store: Store) -> None:
        if not store.supports_index:
            with pytest.raises(NotImplementedError, match="no query index"):
                store.rebuild_index()
            return
        for i in range(3):
            store.put_run_record(make_record(f"r{i}", params={"i": i}))
        store.put_derived("r1", {"acc": 0.5})
        seen: list[tuple[int, int | None]] = []
        count = store.rebuild_index(progress=lambda done, total: seen.append((done, total)))
        assert isinstance(count, int) and count >= 3  # (files read or runs indexed: all 3 runs)
        assert isinstance(store.index_unit, str) and store.index_unit
        assert [d["run_id"] for d in store.query_runs(where="params.i >= 1")] == ["r1", "r2"]
        assert [d["run_id"] for d in store.query_runs(where="derived.acc = 0.5")] == ["r1"]
        store.put_run_record(make_record("r3", params={"i": 3}))  # after a rebuild: still current
        assert len(store.query_runs(where="params.i >= 1")) == 3

    def test_claims_capability(self, store: Store) -> None:
        assert store.try_claim("r1", "host:1:b:ns:0:first", 60.0)
        if store.supports_claims:
            assert not store.try_claim("r1", "host:2:b:ns:0:second", 60.0)
            held = store.claim_holder("r1")
            assert held is not None and held[0] == "host:1:b:ns:0:first"
            store.release_claim("r1", "host:1:b:ns:0:first")
            assert store.claim_holder("r1") is None
            assert store.try_claim("r1", "host:2:b:ns:0:second", 60.0)
        else:
            assert store.try_claim("r1", "host:2:b:ns:0:second", 60.0)  # (no exclusion)
            assert store.claim_holder("r1") is None

    # ---------------------------------------------------------------- queries
    @staticmethod
    def _put_query_runs(store: Store) -> None:
        """Five finished runs (one failed, one without metrics), two with derived
        values, one ``running`` run whose heartbeat is two hours old and one
        beating now."""
        for rec in (
            make_record("q0", params={"lr": 0.1, "opt": "sgd"}, metrics={"loss": 0.9}),
            make_record("q1", params={"lr": 0.01, "opt": "adam"}, metrics={"loss": 0.3}),
            make_record("q2", params={"lr": 0.001, "opt": "adam"}, metrics={"loss": 0.2}),
            make_record("q3", params={"lr": 0.01, "opt": "sgd"}, metrics={"loss": 0.5},
                        status=Status.FAILED),
            make_record("q4", params={"lr": 0.1, "opt": "adam"}, metrics={}, tags=("slow",)),
        ):
            store.put_run_record(rec)
        store.put_derived("q1", {"acc": 0.8})
        store.put_derived("q2", {"acc": 0.9})
        now = datetime.now(UTC)
        for run_id, beat in (("l1", now - timedelta(hours=2)), ("l2", now)):
            store.put_run_record(make_record(run_id, status=Status.RUNNING, started_at=beat,
                                             heartbeat_at=beat, finished_at=None,
                                             duration_ms=None))

    def test_query_where(self, store: Store) -> None:
        self._put_query_runs(store)

        def ids(where: str | None, **kw: Any) -> list[str]:
            return [d["run_id"] for d in store.query_runs(where=where, **kw)]

        assert ids("params.opt = 'adam'") == ["q1", "q2", "q4"]
        assert ids("params.lr < 0.05 and metrics.loss >= 0.3") == ["q1", "q3"]
        assert ids("status = 'failed'") == ["q3"]
        assert ids("derived.acc > 0.85") == ["q2"]
        assert ids("tags contains 'slow'") == ["q4"]
        assert ids("params.lr >= 0.1", order_by="-params.lr", limit=2) == ["q0", "q4"]
        assert store.query_runs(where="run_id = 'q1'",
                                columns=["params.lr", "metrics.loss", "derived.acc"]) == [{
            "run_id": "q1", "experiment_id": CONTRACT_EXPERIMENT, "status": "success",
            "started_at": "2026-01-02T03:04:05.123456Z", "params": {"lr": 0.01},
            "metrics": {"loss": 0.3}, "derived": {"acc": 0.8},
        }]

    def test_lost_status_follows_the_heartbeat(self, store: Store) -> None:
        """A ``running`` run whose heartbeat is older than the liveness limit reads
        ``lost`` in queries and tables; one beating now reads ``running``."""
        from metalab import load_results

        self._put_query_runs(store)
        assert [d["run_id"] for d in store.query_runs(where="status = 'lost'")] == ["l1"]
        assert [d["run_id"] for d in store.query_runs(where="status = 'running'")] == ["l2"]
        status = {d["run_id"]: d["status"] for d in store.query_runs(columns=["status"])}
        assert (status["l1"], status["l2"], status["q3"]) == ("lost", "running", "failed")
        frame = load_results(store).to_dataframe()
        assert dict(zip(frame["run_id"], frame["status"], strict=True))["l1"] == "lost"

    def test_run_table_shape(self, store: Store) -> None:
        """``load_results(...).to_dataframe()``: one row per run, the same columns
        and cells on every backend."""
        from metalab import load_results

        self._put_query_runs(store)
        frame = load_results(store).to_dataframe().sort_values("run_id")
        assert frame.shape == (7, 13)
        assert list(frame.columns) == [
            "run_id", "experiment_id", "status", "started_at", "finished_at", "duration_ms",
            "context_fingerprint", "params.lr", "params.opt", "params.name", "params.x", "loss",
            "derived.acc",
        ]
        assert list(frame["run_id"]) == ["l1", "l2", "q0", "q1", "q2", "q3", "q4"]
        row = frame.set_index("run_id").loc["q1"]
        assert (row["params.lr"], row["params.opt"], row["loss"], row["derived.acc"]) == (
            0.01, "adam", 0.3, 0.8)
        narrow = load_results(store, where="params.opt = 'adam'",
                              columns=["params.lr", "metrics.loss"]).to_dataframe()
        assert sorted(narrow["run_id"]) == ["q1", "q2", "q4"]

    def test_claims_exclusive_between_two_claimers(self, store: Store) -> None:
        """Two stores of the same data claim the same runs at the same moment:
        each run goes to exactly one of them."""
        if not store.supports_claims:
            pytest.skip(f"{type(store).__name__} does not support claims")
        import threading

        other = store.config.connect()
        runs = [f"c{i}" for i in range(20)]
        won: dict[str, list[str]] = {"first": [], "second": []}
        start = threading.Barrier(2)

        def claim(claimer: Store, who: str) -> None:
            start.wait()
            for run_id in runs:
                if claimer.try_claim(run_id, f"host:1:b:ns:0:{who}", 60.0):
                    won[who].append(run_id)

        try:
            threads = [threading.Thread(target=claim, args=(s, who))
                       for s, who in ((store, "first"), (other, "second"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            other.close()
        assert sorted(won["first"] + won["second"]) == sorted(runs)
        for run_id in runs:
            held = store.claim_holder(run_id)
            winner = "first" if run_id in won["first"] else "second"
            assert held is not None and held[0] == f"host:1:b:ns:0:{winner}"

    # ---------------------------------------------------------------- read-only
    def test_read_only_refuses_every_write(
        self, store: Store, raw: RawAccess, read_only_store: Store, tmp_path: Path
    ) -> None:
        eid = CONTRACT_EXPERIMENT
        rec = make_record("r1")
        store.put_run_record(rec)
        store.put_derived("r1", {"acc": 1})
        store.put_data("r1", "d", {"data": [1]})
        store.append_log("r1", "run", "before\n")
        desc = store.put_artifact("r1", "a", b"old", kind="file", format="bin")
        store.put_experiment_manifest(eid, {"experiment_id": eid, "n": 1})
        ro = read_only_store
        assert ro.read_only and not store.read_only
        src = tmp_path / "src.bin"
        src.write_bytes(b"new")
        writes: dict[str, Callable[[], object]] = {
            "put_run_record": lambda: ro.put_run_record(make_record("r1", metrics={"loss": 9})),
            "delete_run": lambda: ro.delete_run("r1"),
            "put_artifact": lambda: ro.put_artifact("r1", "a", src, kind="file", format="bin"),
            "append_log": lambda: ro.append_log("r1", "run", "after\n"),
            "log_path": lambda: ro.log_path("r1", "other"),
            "open_live_series": lambda: ro.open_live_series("r1"),
            "put_data": lambda: ro.put_data("r1", "d", {"data": [2]}),
            "put_derived": lambda: ro.put_derived("r1", {"acc": 2}),
            "put_experiment_manifest": lambda: ro.put_experiment_manifest(eid, {"n": 2}),
            "try_claim": lambda: ro.try_claim("r2", "host:1:b:ns:0:tok", 60.0),
            "touch_heartbeat": lambda: ro.touch_heartbeat("r2", "host:1:b:ns:0:tok"),
            "release_claim": lambda: ro.release_claim("r2", "host:1:b:ns:0:tok"),
            "rebuild_index": lambda: ro.rebuild_index(),
            "annotate_runs": lambda: ro.annotate_runs(["r1"], add_tags=["x"]),
            "annotate_experiment": lambda: ro.annotate_experiment(eid, add_tags=["x"]),
            "delete_experiment": lambda: ro.delete_experiment(eid),
        }
        assert set(writes) == WRITE_METHODS  # a new write method needs a line here
        for name, call in writes.items():
            with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
                call()
            assert info.value.method == name
            assert isinstance(info.value, StoreError)
        # nothing changed, and reading still works
        assert raw.run_document("r1") == rec.to_dict()
        assert ro.get_run_record("r1") == rec
        assert [r.run_id for r in ro.list_run_records()] == ["r1"]
        assert [d["run_id"] for d in ro.query_runs(where="metrics.loss = 0.5")] == ["r1"]
        assert ro.get_derived("r1") == {"acc": 1}
        assert ro.get_data("r1", "d") == {"data": [1], "kind": "data", "dtype": None,
                                          "shape": None, "metadata": {}}
        assert ro.get_log("r1") == "before\n" and ro.list_logs("r1") == ["run"]
        assert raw.artifact_bytes(desc.uri) == b"old"
        assert ro.get_artifact_bytes("r1", "a") == b"old"
        assert [m["n"] for _ts, m in ro.list_experiment_manifests(eid)] == [1]
        assert ro.claim_holder("r2") is None
        assert raw.temp_files() == []
