"""Tags and notes from Results and Run, and experiment tags reaching the runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import metalab
from metalab.store import FileStoreConfig


def _op(params, capture):
    capture.metric("loss", params["lr"])


def _experiment(**kw) -> metalab.Experiment:
    return metalab.Experiment(name="cur", version="1", context={}, operation=_op,
                              params=metalab.grid(lr=[0.1, 0.2, 0.3]),
                              seeds=metalab.seeds(0, 1), **kw)


@pytest.fixture
def root(tmp_path: Path) -> str:
    root = str(tmp_path / "experiments")
    metalab.run(_experiment(tags=["sgd"]), store=root).result()
    return root


def _load(root: str, where: str | None = None) -> metalab.Results:
    return metalab.load_results(root, experiment_id="cur:1", where=where)


def test_experiment_tags_given_at_run_time_reach_every_run(root: str) -> None:
    assert len(_load(root, 'tags contains "sgd"')) == 3
    store = FileStoreConfig(root=root, experiment_id="cur:1").connect()
    assert len(store.query_runs(where='tags contains "sgd"')) == 3
    assert all(run.tags == ("sgd",) for run in _load(root))


def test_results_tag_untag_and_note_reach_the_store(root: str) -> None:
    results = _load(root)
    picked = results.where("params.lr < 0.25")
    assert sorted(picked.tag("baseline")) == sorted(picked.run_ids)
    assert picked.tag("baseline") == []  # already tagged: nothing changed
    again = _load(root, 'tags contains "baseline"')
    assert sorted(again.run_ids) == sorted(picked.run_ids)
    assert len(results.where('tags contains "baseline"')) == 0  # (a snapshot stays one)
    assert len(_load(root).where('tags contains "baseline"')) == 2
    assert len(again.untag("sgd")) == 2  # also a tag from run time
    assert len(_load(root, 'tags contains "sgd"')) == 1
    again.set_note("reference")
    assert {run.note for run in _load(root, 'tags contains "baseline"')} == {"reference"}


def test_run_tag_shows_at_once_on_the_run(root: str) -> None:
    run = _load(root, "params.lr = 0.3")[0]
    assert run.tag("worst") is True
    assert run.tags == ("sgd", "worst")
    assert run.untag("sgd") is True and run.tags == ("worst",)
    assert run.set_note("diverged") is True and run.note == "diverged"
    assert run.set_note(None) is True and run.note == ""
    fresh = _load(root, 'tags contains "worst"')
    assert fresh.run_ids == [run.run_id]
    with pytest.raises(metalab.ValidationError):
        run.tag("")


def test_tags_after_the_fact_on_the_experiment(root: str) -> None:
    store = FileStoreConfig(root=root, experiment_id="cur:1").connect()
    store.annotate_experiment(add_tags=["adam"], remove_tags=["sgd"])
    assert len(_load(root, 'tags contains "adam" and not tags contains "sgd"')) == 3
    # a new run of the experiment (another parameter) shows the experiment's tags too
    exp = metalab.Experiment(name="cur", version="1", context={}, operation=_op,
                             params=metalab.grid(lr=[0.4]), seeds=metalab.seeds(0, 1),
                             tags=["sgd"])
    metalab.run(exp, store=root).result()
    assert len(_load(root, 'tags contains "adam"')) == 4
    assert len(_load(root, 'tags contains "sgd"')) == 0
