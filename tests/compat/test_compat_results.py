"""The original metalab's Results API, and the one naming of table columns."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import compat_ops
import pytest

import metalab
from metalab import ValidationError
from metalab.analysis import _frames


@pytest.fixture
def results(tmp_path):
    exp = metalab.Experiment(name="r", version="1", context={}, operation=compat_ops.with_data,
                             params=metalab.grid(x=[1, 2, 3]), seeds=metalab.seeds(0, 2))
    return metalab.run(exp, store=tmp_path).result()


@pytest.fixture
def with_failure(tmp_path):
    exp = metalab.Experiment(name="f", version="1", context={}, operation=compat_ops.fails_on_two,
                             params=metalab.grid(x=[1, 2, 3]), seeds=metalab.seeds(0, 2))
    return metalab.run(exp, store=tmp_path).result()


@pytest.fixture(autouse=True)
def default_naming(monkeypatch):
    monkeypatch.delenv(_frames.COLUMN_NAMES_ENV, raising=False)
    monkeypatch.setattr(_frames, "_style", None)


# ------------------------------------------------------------------ table


def test_table_as_dataframe_false_returns_one_dict_per_run(results):
    rows = results.table(as_dataframe=False)
    assert isinstance(rows, list) and len(rows) == 6
    row = rows[0]
    assert {"run_id", "experiment_id", "status", "duration_ms", "started_at", "finished_at",
            "params_fingerprint", "seed_fingerprint", "params.x", "x", "tags"} <= row.keys()
    assert row["status"] == "success" and row["params.x"] == row["x"] and row["tags"] == ""
    assert results.table(as_dataframe=False, names="original")[0]["param_x"] == row["x"]


def test_table_as_dataframe_true_and_positional_true_give_the_rows_as_a_frame(results):
    df = results.table(as_dataframe=True)
    assert len(df) == 6 and "params.x" in df.columns
    assert list(results.table(True).columns) == list(df.columns)


def test_table_without_the_keyword_still_returns_text(results):
    text = results.table()
    assert isinstance(text, str) and "params.x" in text and "run_id" in text
    assert isinstance(results.table(2), str)
    with pytest.raises(ValidationError, match="as_dataframe"):
        results.table(3, as_dataframe=False)


# ---------------------------------------------------------------- summary


def test_summary_counts_statuses_and_durations(with_failure):
    s = with_failure.summary()
    assert s["total_runs"] == 6 and s["by_status"] == {"failed": 2, "success": 4}
    assert s["min_duration_ms"] <= s["avg_duration_ms"] <= s["max_duration_ms"]


def test_summary_of_nothing_has_no_made_up_durations(results):
    s = results.where("params.x > 100").summary()
    assert s == {"total_runs": 0, "by_status": {}, "avg_duration_ms": None,
                 "min_duration_ms": None, "max_duration_ms": None}


def test_display_groups_by_params_and_metrics(with_failure):
    out = io.StringIO()
    text = with_failure.display(group_by=["x"], file=out)
    assert out.getvalue().rstrip("\n") == text
    lines = text.splitlines()
    assert "total runs: 6" in text and "failed: 2" in text
    header = next(i for i, line in enumerate(lines) if line.startswith("x "))
    assert lines[header].split() == ["x", "success", "failed", "total"]
    assert [line.split() for line in lines[header + 1:]] == [
        ["1", "2", "0", "2"], ["2", "0", "2", "2"], ["3", "2", "0", "2"]]
    assert "By params.x" in with_failure.display(group_by="params.x", show_summary=False, file=out)
    with pytest.raises(ValidationError, match="unknown field"):
        with_failure.display(group_by="nope", file=out)


# ------------------------------------------------------------ to_dataframe


def test_to_dataframe_takes_the_original_keywords(results):
    df = results.to_dataframe(include_params=True, include_metrics=True, include_record=False,
                              include_derived=False)
    assert list(df.columns) == ["run_id", "params.x", "x"]


def test_artifact_reducers_with_one_or_two_arguments(results, caplog):
    def last(history):
        return {"last": history["values"][-1]}

    def with_run(history, run):
        return {"x_again": run.params["x"], "first": history["values"][0]}

    def broken(history):
        raise RuntimeError("reducer bug")

    with caplog.at_level(logging.WARNING, "metalab.analysis"):
        df = results.to_dataframe(artifact_reducers={"history": last, "missing": last})
        both = results.to_dataframe(artifact_reducers={"history": with_run})
        results.to_dataframe(artifact_reducers={"history": broken})
    assert (df["last"] == df["params.x"] + 1).all()
    assert (both["x_again"] == both["params.x"]).all() and (both["first"] == both["x"]).all()
    assert "reducer bug" in caplog.text and "history" in caplog.text


def test_derived_metrics_on_the_fly_read_captured_data_and_are_not_stored(results):
    df = results.to_dataframe(derived_metrics=[compat_ops.data_sum])
    assert (df["derived.curve_sum"] == df["params.x"] * 6).all()
    assert all(run.derived == {} for run in results)  # nothing stored
    ref = results.to_dataframe(derived_metrics="compat_ops:data_sum", names="original")
    assert list(ref["derived_curve_sum"]) == list(df["derived.curve_sum"])


def test_captured_data_reaches_runs_and_worker_derived_metrics(tmp_path):
    exp = metalab.Experiment(name="d", version="1", context={}, operation=compat_ops.with_data,
                             params=metalab.grid(x=[2]), seeds=metalab.seeds(0))
    results = metalab.run(exp, store=tmp_path, derived_metrics=["compat_ops:data_sum"]).result()
    run = results[0]
    assert run.data("curve") == [0, 2, 4, 6] and "curve" in run.list_data()
    assert run.derived == {"curve_sum": 12}


# ---------------------------------------------------------------- naming


def test_columns_are_named_like_query_fields_by_default(results):
    df = results.to_dataframe()
    assert "params.x" in df.columns and "param_x" not in df.columns
    results.compute_derived(compat_ops.data_sum)
    assert "derived.curve_sum" in results.to_dataframe().columns
    agg = results.aggregate(by=["params.x"], metrics=["x"], stats=["mean"])
    assert list(agg.columns) == ["params.x", "n_runs", "x_mean"]
    # a column name is a field the query language accepts
    assert len(results.where("params.x >= 2")) == 4


def test_original_names_by_keyword(results):
    df = results.to_dataframe(names="original")
    assert "param_x" in df.columns and "params.x" not in df.columns
    agg = results.aggregate(by="params", names="original")
    assert "param_x" in agg.columns
    with pytest.raises(ValidationError, match="unknown column naming"):
        results.to_dataframe(names="pandas")


def test_original_names_process_wide_with_one_line(results):
    metalab.set_column_names("original")
    assert "param_x" in results.to_dataframe().columns
    assert "param_x" in results.aggregate().columns
    assert "params.x" in results.to_dataframe(names="fields").columns  # the keyword wins
    with pytest.raises(ValidationError):
        metalab.set_column_names("camel")


def test_original_names_by_environment_variable(results, monkeypatch):
    monkeypatch.setenv(_frames.COLUMN_NAMES_ENV, "original")
    assert "param_x" in results.to_dataframe().columns
    monkeypatch.setenv(_frames.COLUMN_NAMES_ENV, "bogus")
    with pytest.raises(ValidationError, match="METALAB_COLUMN_NAMES"):
        results.to_dataframe()


def test_a_metric_named_like_a_record_column_gets_the_namespace(tmp_path):
    from metalab.model import RunRecord, Status
    from metalab.store import FileStore

    store = FileStore(tmp_path, experiment_id="m:1")
    store.put_run_record(RunRecord(run_id="r1", experiment_id="m:1", status=Status.SUCCESS,
                                   params={"a": 1}, metrics={"status": 3}))
    results = metalab.load_results(store)
    assert results.to_dataframe().loc[0, "metrics.status"] == 3
    assert results.to_dataframe(names="original").loc[0, "metric_status"] == 3


ORIGINAL_SCRIPT = textwrap.dedent('''
    import sys
    import metalab

    @metalab.operation
    def estimate(params, seeds, capture):
        capture.metric("y", params["lr"] * 2)

    exp = metalab.Experiment(name="orig", version="1", context={}, operation=estimate,
                             params=metalab.grid(lr=[0.1, 0.2]), seeds=metalab.seeds(base=42))
    results = metalab.run(exp, store=sys.argv[1]).result()
    df = results.to_dataframe()
    print(sorted(df["param_lr"]), sorted(df["y"]))
''')


def test_an_original_script_using_param_columns_runs_with_the_environment_switch(tmp_path):
    script = tmp_path / "orig.py"
    script.write_text(ORIGINAL_SCRIPT)
    env = {**__import__("os").environ, "METALAB_COLUMN_NAMES": "original"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0.1, 0.2] [0.2, 0.4]"


# --------------------------------------------------------- more original keywords


def test_to_csv_takes_the_original_keywords(results, tmp_path):
    plain = results.to_csv(tmp_path / "out.csv")
    assert plain == str(tmp_path / "out.csv")
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert "context_fingerprint" in header and "params.x" in header
    slim = results.to_csv(tmp_path / "slim.csv", include_fingerprints=False, include_derived=False)
    assert not any(c.endswith("_fingerprint") for c in Path(slim).read_text().splitlines()[0].split(","))
    stamped = results.to_csv(tmp_path / "s.csv", timestamp=True)
    assert stamped != str(tmp_path / "s.csv") and stamped.startswith(str(tmp_path / "s_"))
    (tmp_path / "dir").mkdir()
    inside = results.to_csv(tmp_path / "dir")
    assert inside.startswith(str(tmp_path / "dir" / "results_")) and inside.endswith(".csv")
    assert len(Path(inside).read_text().splitlines()) == 7
    # a new name without suffix is a file name (not a folder created on the fly)
    bare = results.to_csv(tmp_path / "table")
    assert bare == str(tmp_path / "table") and (tmp_path / "table").is_file()
    slash = results.to_csv(f"{tmp_path / 'made'}/")
    assert Path(slash).parent == tmp_path / "made" and Path(slash).name.startswith("results_")


def test_load_run_fingerprints_and_progress_keywords(results):
    run = results[0]
    assert results.load(run.run_id, "history") == run.artifact("history")
    with pytest.raises(metalab.NotFoundError):
        results.load("nope", "history")
    assert len(run.params_fingerprint) == len(run.seed_fingerprint) == 16
    assert run.context_fingerprint == run.record.context_fingerprint
    df = results.to_dataframe(derived_metrics=[compat_ops.data_sum], progress=True)
    assert "derived.curve_sum" in df.columns
    assert results.compute_derived(compat_ops.data_sum, progress=True) is results
    assert {r.derived["curve_sum"] for r in results} == {6, 12, 18}
