"""The original metalab's handle, error and store API, and resolvers under every local executor."""

from __future__ import annotations

import json

import compat_ops
import pytest

import metalab
from metalab.definition import source_from_manifest
from metalab.execution import DaskExecutor, ProcessExecutor, SerialExecutor, ThreadExecutor
from metalab.store import ConfigRegistry, FileStore, parse_locator


def resolved_exp(name="rs"):
    return metalab.Experiment(
        name=name, version="1", context={}, operation=compat_ops.record_params,
        params=metalab.grid(n=[10.0, 20.0]), seeds=metalab.seeds(0, 2),
        param_resolver=compat_ops.to_int_resolver,
    )


def stored_params(root, name="rs"):
    return sorted(
        (json.loads(p.read_text())["params"]["n"], json.loads(p.read_text())["params"]["half"])
        for p in (root / f"{name}_1" / "runs").glob("*.json")
    )


@pytest.mark.parametrize("executor", [None, "thread", "process"])
def test_workers_run_the_resolved_params_under_local_run_ids(tmp_path, executor):
    ex = {"thread": ThreadExecutor(2), "process": ProcessExecutor(2), None: None}[executor]
    results = metalab.run(resolved_exp(), store=tmp_path / "s", executor=ex).result(timeout=120)
    assert len(results) == 4 and all(r.status is metalab.Status.SUCCESS for r in results)
    assert stored_params(tmp_path / "s") == [(10, 5), (10, 5), (20, 10), (20, 10)]
    assert {r.metrics["got_n"] for r in results} == {10, 20}  # the operation saw ints
    assert sorted(results.run_ids) == sorted(s.run_id for s in resolved_exp().iter_specs())


def test_dask_workers_run_the_resolved_params(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        results = metalab.run(resolved_exp(), store=tmp_path, executor=DaskExecutor(client)).result(
            timeout=120)
    assert {r.metrics["got_half"] for r in results} == {5, 10}
    assert sorted(results.run_ids) == sorted(s.run_id for s in resolved_exp().iter_specs())


def test_a_lambda_resolver_runs_locally_and_in_processes(tmp_path):
    exp = metalab.Experiment(name="lam", version="1", context={}, operation=compat_ops.record_params,
                             params=metalab.grid(x=[1]), seeds=metalab.seeds(0),
                             param_resolver=lambda meta, p: {**p, "y": 2})
    # the submitting process resolves the params; the resolver never travels to a worker
    results = metalab.run(exp, store=tmp_path, executor=ProcessExecutor(1)).result(timeout=120)
    assert results[0].params == {"x": 1, "y": 2}
    assert exp.manifest()["params"]["resolver"] is None


# ------------------------------------------------------------------ handles


@pytest.mark.parametrize("executor", [SerialExecutor, lambda: ThreadExecutor(2)])
def test_handle_status_has_the_original_counts(tmp_path, executor):
    exp = metalab.Experiment(name="h", version="1", context={}, operation=compat_ops.fails_on_two,
                             params=metalab.grid(x=[1, 2, 3]), seeds=metalab.seeds(0, 2))
    handle = metalab.run(exp, store=tmp_path, executor=executor())
    assert isinstance(handle, metalab.Handle) and isinstance(handle, metalab.LocalRunHandle)
    assert handle.job_id.startswith("local-") and handle.job_id == handle.job_id
    handle.result()
    st = handle.status
    assert handle.is_complete is True
    assert (st.total, st.completed, st.running, st.pending, st.failed, st.skipped) == (6, 4, 0, 0, 2, 0)
    assert st.in_flight == 0 and st.done == 6
    again = metalab.run(exp, store=tmp_path, executor=executor())
    again.result()
    assert again.status.skipped == 4 and again.status.completed == 0  # resume: successes skipped
    assert again.job_id != handle.job_id


def test_error_info_reads_as_mapping_and_attributes(tmp_path):
    exp = metalab.Experiment(name="e", version="1", context={}, operation=compat_ops.fails_on_two,
                             params=metalab.grid(x=[2]), seeds=metalab.seeds(0))
    run = metalab.run(exp, store=tmp_path).result()[0]
    error = run.error
    assert error["message"] == error.message == "x must not be 2"
    assert error["type"] == "ValueError" and "Traceback" in error.get("traceback")
    assert dict(error).keys() == {"type", "message", "traceback"} and "message" in error
    with pytest.raises(KeyError):
        error["nope"]


# -------------------------------------------------------------------- stores


def test_file_store_root_is_the_folder_of_its_files(tmp_path):
    from metalab.model import RunRecord, Status

    scoped = FileStore(tmp_path, experiment_id="my_exp:1.0")
    scoped.put_run_record(RunRecord(run_id="r1", experiment_id="my_exp:1.0", status=Status.SUCCESS))
    assert scoped.root == tmp_path / "my_exp_1.0"
    assert any(scoped.root.rglob("r1*"))  # the record is inside root
    assert FileStore(tmp_path).root == tmp_path


def test_config_registry_lists_schemes_and_locators_expose_params(tmp_path):
    assert {"file", "postgresql", "postgres"} <= set(ConfigRegistry.schemes())
    assert ConfigRegistry.schemes() == sorted(ConfigRegistry.schemes())
    info = parse_locator(f"file://{tmp_path}?experiment_id=exp:1")
    assert info.params == {"experiment_id": "exp:1"} and info.params is info.query
    pg = parse_locator("postgresql://u@h/db?schema=s&file_root=/x")
    assert dict(pg.params) == {"schema": "s", "file_root": "/x"}


def test_experiment_manifests_are_readable_through_the_store(tmp_path):
    exp = resolved_exp("mf")
    handle = metalab.run(exp, store=tmp_path)
    handle.result()
    store = handle.store
    latest = store.get_experiment_manifest("mf:1")
    assert latest["experiment_id"] == "mf:1" and latest["total_runs"] == 4
    assert source_from_manifest(latest["params"]) == exp.params
    assert len(store.list_experiment_manifests("mf:1")) == 1
    reopened = metalab.FileStoreConfig(root=str(tmp_path)).scoped("mf:1").connect()
    assert reopened.get_experiment_manifest("mf:1")["params"]["resolver"] == (
        "compat_ops:to_int_resolver")
