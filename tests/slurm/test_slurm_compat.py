"""The original metalab's API on SLURM: the param resolver reaches the array tasks, and the
handle has job_id, is_complete and the original's status counts."""

from __future__ import annotations

import slurm_ops
import slurm_resolver_ops
from test_slurm import records

import metalab
from metalab import Experiment, grid, seeds
from metalab.execution import SlurmConfig, SlurmExecutor


def resolved(counter):
    counter.mkdir(exist_ok=True)
    return Experiment(name="sl", version="1", context={"counter_dir": str(counter)},
                      operation=slurm_ops.square, params=grid(x=[1.0, 2.0, 3.0]), seeds=seeds(0, 2),
                      param_resolver=slurm_resolver_ops.shift)


def test_array_tasks_run_the_resolved_params_under_the_local_run_ids(tmp_path):
    exp = resolved(tmp_path / "count")
    handle = metalab.run(exp, store=tmp_path / "store",
                         executor=SlurmExecutor(SlurmConfig(chunk_size=2, poll_interval=0.2, time="5")))
    assert handle.job_id == ",".join(handle.job_ids) and handle.job_id.isdigit()
    results = handle.result(timeout=90)
    assert handle.is_complete
    st = handle.status
    assert (st.total, st.completed, st.running, st.pending, st.failed, st.skipped) == (6, 6, 0, 0, 0, 0)
    recs = records(tmp_path / "store")
    assert sorted(r["params"]["x"] for r in recs.values()) == [2, 2, 3, 3, 4, 4]
    assert {r["metrics"]["y"] for r in recs.values()} == {4, 9, 16}
    assert sorted(results.run_ids) == sorted(s.run_id for s in exp.iter_specs())
    local = metalab.run(resolved(tmp_path / "count"), store=tmp_path / "local").result()
    assert sorted(local.run_ids) == sorted(results.run_ids)


def test_an_unimportable_resolver_is_refused_at_submission_with_the_reason(tmp_path):
    import pytest

    exp = Experiment(name="sl", version="1", context={}, operation=slurm_ops.square,
                     params=grid(x=[1]), seeds=seeds(0), param_resolver=lambda meta, p: dict(p))
    with pytest.raises(metalab.MetalabError, match="not importable by reference"):
        metalab.run(exp, store=tmp_path / "store", executor=SlurmExecutor(poll_interval=0.2))
