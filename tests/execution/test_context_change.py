"""Re-running name:version with another context: warned at run(), told apart in the tables."""

from __future__ import annotations

import logging
from pathlib import Path

import exec_ops
import pytest

from metalab import load_results
from metalab.definition import Experiment, grid, seeds
from metalab.execution import run


def make_exp(root: Path, **context: object) -> Experiment:
    return Experiment(
        name="exp", version="1", context={"root": str(root), **context},
        operation=exec_ops.basic, params=grid(x=[1, 2]), seeds=seeds(0, 3),
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_another_context_is_warned_and_recorded_as_a_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_exp(tmp_path, data="v1"), make_exp(tmp_path, data="v2")
    assert first.context_fingerprint != second.context_fingerprint
    with caplog.at_level(logging.WARNING):
        run(first, store=tmp_path)
    assert not [m for m in _warnings(caplog) if "context" in m]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run(second, store=tmp_path)
    said = [m for m in _warnings(caplog) if "context" in m]
    assert len(said) == 1
    assert "exp:1" in said[0] and first.context_fingerprint[:12] in said[0]
    assert second.context_fingerprint[:12] in said[0]
    assert "context_fingerprint" in said[0] and "version" in said[0]  # how to tell, what to do

    df = load_results(tmp_path, "exp:1").to_dataframe()
    assert len(df) == 12  # both sets of 2 x 3 runs are in the store
    assert list(df.columns[:3]) == ["run_id", "experiment_id", "status"]
    assert "context_fingerprint" in df.columns
    counts = df["context_fingerprint"].value_counts().to_dict()
    assert counts == {first.context_fingerprint: 6, second.context_fingerprint: 6}
    # the replicates of one parameter case: 3 per context, not 6 mixed
    per_case = df.groupby(["context_fingerprint", "params.x"]).size()
    assert set(per_case) == {3}


def test_same_context_again_is_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(make_exp(tmp_path, data="v1"), store=tmp_path)
    with caplog.at_level(logging.WARNING):
        run(make_exp(tmp_path, data="v1"), store=tmp_path)
    assert not [m for m in _warnings(caplog) if "context" in m]


def test_column_lists_have_the_fingerprint(tmp_path: Path) -> None:
    from metalab.analysis._tables import column_lists

    exp = make_exp(tmp_path, data="v1")
    run(exp, store=tmp_path)
    cols = column_lists(load_results(tmp_path, "exp:1"))
    assert cols["context_fingerprint"] == [exp.context_fingerprint] * 6
