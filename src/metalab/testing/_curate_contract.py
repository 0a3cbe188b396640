"""The curation part of the store contract: tags and notes after the fact, deletion.

Mixed into :class:`~metalab.testing.StoreContractTests`; uses its ``store`` and
``raw`` fixtures.  A store with ``supports_annotations`` must deliver every
case; one without must refuse with ``NotImplementedError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from metalab._errors import NotFoundError, ValidationError
from metalab.model import RunRecord, Status
from metalab.store import Store, export_store

if TYPE_CHECKING:
    from metalab.testing._store_contract import RawAccess

__all__ = ["CurationContractTests"]

_EXP = "contract:1"


def _record(run_id: str, **kw: Any) -> RunRecord:
    fields: dict[str, Any] = {"status": Status.SUCCESS, "params": {"x": 1},
                              "metrics": {"loss": 0.5}, "tags": ("t0",)}
    fields.update(kw)
    return RunRecord(run_id=run_id, experiment_id=_EXP, **fields)


def _ids(store: Store, where: str) -> list[str]:
    return sorted(d["run_id"] for d in store.query_runs(where=where))


class CurationContractTests:
    """Contract cases of annotations and deletion (see the module docstring)."""

    @staticmethod
    def _three(store: Store) -> None:
        for rid in ("r1", "r2", "r3"):
            store.put_run_record(_record(rid))

    def test_curation_capability(self, store: Store) -> None:
        if store.supports_annotations:
            return
        self._three(store)
        with pytest.raises(NotImplementedError):
            store.annotate_runs(["r1"], add_tags=["x"])
        with pytest.raises(NotImplementedError):
            store.delete_experiment(_EXP)

    def test_tags_and_note_reach_reads_and_queries_at_once(
            self, store: Store, raw: RawAccess) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        assert _ids(store, 'tags contains "baseline"') == []  # (the index is built)
        assert store.annotate_runs(["r1", "r2"], add_tags=["baseline"], note="good") == [
            "r1", "r2"]
        assert _ids(store, 'tags contains "baseline"') == ["r1", "r2"]
        rec = store.get_run_record("r1")
        assert rec is not None and rec.tags == ("t0", "baseline") and rec.notes == "good"
        docs = {d["run_id"]: d for d in store.iter_run_documents()}
        assert docs["r2"]["tags"] == ["t0", "baseline"] and docs["r3"]["tags"] == ["t0"]
        # the record stays what the execution wrote
        assert raw.run_document("r1") == _record("r1").to_dict()
        # untag, also a tag the run had from execution time
        assert store.annotate_runs(["r1"], remove_tags=["t0", "baseline"]) == ["r1"]
        assert _ids(store, 'tags contains "t0"') == ["r2", "r3"]
        assert _ids(store, 'tags contains "baseline"') == ["r2"]
        # the same change again writes nothing
        assert store.annotate_runs(["r1"], remove_tags=["baseline"]) == []
        ann = store.get_annotations("r1")
        assert ann.tags == () and ann.removed_tags == ("t0",) and ann.note == "good"
        store.annotate_runs(["r1"], note=None)
        rec = store.get_run_record("r1")
        assert rec is not None and rec.notes == ""

    def test_annotations_survive_a_new_record_and_reach_the_index(self, store: Store) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        store.annotate_runs(["r2"], add_tags=["keep"])
        store.put_run_record(_record("r2", metrics={"loss": 0.1}))  # a re-execution
        assert _ids(store, 'tags contains "keep" and metrics.loss < 0.2') == ["r2"]
        if store.supports_index:
            store.rebuild_index()
            assert _ids(store, 'tags contains "keep"') == ["r2"]

    def test_unknown_run_or_bad_tag_changes_nothing(self, store: Store) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        with pytest.raises(NotFoundError, match="nope"):
            store.annotate_runs(["r1", "nope"], add_tags=["x"])
        bad_tags: list[Any] = ["", "a\nb", "x" * 201, 3]
        for bad in bad_tags:
            with pytest.raises(ValidationError):
                store.annotate_runs(["r1"], add_tags=[bad])
        with pytest.raises(ValidationError, match="list of strings"):
            store.annotate_runs(["r1"], add_tags="abc")
        with pytest.raises(ValidationError, match="note"):
            store.annotate_runs(["r1"], note=5)
        assert _ids(store, 'tags contains "x"') == []
        assert store.get_annotations("r1").tags == ()

    def test_experiment_tags_reach_every_run(self, store: Store) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        assert store.annotate_experiment(_EXP, add_tags=["sgd"], note="first try")
        assert _ids(store, 'tags contains "sgd"') == ["r1", "r2", "r3"]
        store.put_run_record(_record("r4"))  # a run added later gets them too
        assert _ids(store, 'tags contains "sgd"') == ["r1", "r2", "r3", "r4"]
        ann = store.get_experiment_annotations(_EXP)
        assert ann.tags == ("sgd",) and ann.note == "first try"
        store.annotate_runs(["r1"], remove_tags=["sgd"])  # a run's own word wins
        assert _ids(store, 'tags contains "sgd"') == ["r2", "r3", "r4"]
        assert store.annotate_experiment(_EXP, remove_tags=["sgd", "t0"])
        assert _ids(store, 'tags contains "sgd" or tags contains "t0"') == []
        assert not store.annotate_experiment(_EXP, remove_tags=["sgd"])

    def test_delete_run_takes_its_annotations(self, store: Store, raw: RawAccess) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        store.annotate_runs(["r1"], add_tags=["gone"], note="n")
        store.put_artifact("r1", "blob", b"xyz", kind="file", format="bin")
        store.delete_run("r1")
        assert store.get_run_record("r1") is None and raw.run_document("r1") is None
        assert _ids(store, 'tags contains "gone"') == []
        assert _ids(store, "status = 'success'") == ["r2", "r3"]
        assert store.get_annotations("r1").tags == ()
        store.put_run_record(_record("r1"))  # the same run again starts clean
        rec = store.get_run_record("r1")
        assert rec is not None and rec.tags == ("t0",) and store.list_artifacts("r1") == []
        store.delete_run("r1")
        store.delete_run("r1")  # nothing left: nothing to do
        with pytest.raises(NotFoundError):
            store.annotate_runs(["r1"], add_tags=["x"])

    def test_delete_experiment(self, store: Store, raw: RawAccess) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        store.annotate_experiment(_EXP, add_tags=["sgd"])
        store.put_experiment_manifest(_EXP, {"experiment_id": _EXP})
        assert _ids(store, 'tags contains "sgd"') == ["r1", "r2", "r3"]
        assert store.delete_experiment(_EXP) is True
        assert store.list_experiments() == []
        assert store.query_runs() == [] and list(store.iter_run_documents()) == []
        assert store.get_run_record("r1") is None and raw.run_document("r1") is None
        with pytest.raises(NotFoundError):
            store.delete_experiment(_EXP)
        store.put_run_record(_record("r1"))  # the experiment can start again, clean
        assert _ids(store, 'tags contains "sgd"') == []
        assert _ids(store, 'tags contains "t0"') == ["r1"]

    def test_export_carries_annotations(self, store: Store, tmp_path: Path) -> None:
        if not store.supports_annotations:
            return
        self._three(store)
        store.annotate_runs(["r1"], add_tags=["best"], remove_tags=["t0"], note="n1")
        store.annotate_experiment(_EXP, add_tags=["sgd"], note="about")
        dest = str(tmp_path / "exported")
        export_store(store, dest)
        from metalab.store import FileStoreConfig

        copy = FileStoreConfig(root=dest, experiment_id=_EXP).connect()
        assert _ids(copy, 'tags contains "best"') == ["r1"]
        assert _ids(copy, 'tags contains "t0"') == ["r2", "r3"]
        assert _ids(copy, 'tags contains "sgd"') == ["r1", "r2", "r3"]
        assert copy.get_annotations("r1").note == "n1"
        assert copy.get_experiment_annotations(_EXP).note == "about"
        # the records are copied as executed, the annotations as annotations
        assert copy.executed_record("r1") == store.executed_record("r1") == _record("r1")
        copy.annotate_runs(["r1"], note=None)
        rec = copy.get_run_record("r1")
        assert rec is not None and rec.notes == ""
        # and back into a store of the backend under test: a copy of the copy
        export_store(copy, str(tmp_path / "again"))
        again = FileStoreConfig(root=str(tmp_path / "again"), experiment_id=_EXP).connect()
        assert _ids(again, 'tags contains "best"') == ["r1"]
