"""User-given names never escape their folder."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab import InvalidNameError
from metalab._internal._names import check_name, safe_experiment_id


@given(st.text(min_size=1, max_size=120))
def test_experiment_folder_is_one_safe_component(experiment_id: str) -> None:
    folder = safe_experiment_id(experiment_id)
    assert folder and "/" not in folder and "\\" not in folder and "\x00" not in folder
    assert not folder.startswith(".")
    assert os.path.basename(folder) == folder


def test_experiment_folder_examples() -> None:
    assert safe_experiment_id("my_exp:1.0") == "my_exp_1.0"
    assert safe_experiment_id("../evil:1") == "_._evil_1"
    assert safe_experiment_id("données:1") == "données_1"  # letters stay readable


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "a\x00b", ".hidden", "x" * 201])
def test_bad_names_are_refused_with_advice(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="use letters"):
        check_name(bad, "artifact name")


@given(st.text(min_size=1, max_size=50))
def test_accepted_names_stay_in_their_folder(name: str) -> None:
    try:
        check_name(name)
    except InvalidNameError:
        return
    joined = os.path.normpath(os.path.join("/base", name))
    assert os.path.dirname(joined) == "/base"


# ------------------------------------------------------------ lengths in bytes
CJK_100 = "模" * 100  # 100 characters, 300 bytes in UTF-8


def _tree(root: object) -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(str(root)):
        out |= {os.path.relpath(os.path.join(folder, n), str(root)) for n in dirs + files}
    return out


@pytest.fixture
def store(tmp_path: object):  # type: ignore[no-untyped-def]
    from metalab.store import FileStore

    s = FileStore(f"{tmp_path}/store", experiment_id="e:1")
    s.put_data("r1", "warmup", {"data": 1})  # folders exist: a refusal adds nothing
    return s


@pytest.mark.parametrize("kind", ["artifact", "log", "log_path", "data"])
def test_names_too_long_in_bytes_are_refused_before_anything_is_written(
    store: object, tmp_path: object, kind: str
) -> None:
    from metalab.store import FileStore

    assert isinstance(store, FileStore)
    before = _tree(tmp_path)
    write = {
        "artifact": lambda n: store.put_artifact("r1", n, b"x", kind="blob", format="bin"),
        "log": lambda n: store.append_log("r1", n, "line\n"),
        "log_path": lambda n: open(store.log_path("r1", n), "a").close(),
        "data": lambda n: store.put_data("r1", n, {"data": [1]}),
    }[kind]
    with pytest.raises(InvalidNameError, match="bytes") as info:
        write(CJK_100)
    assert "300" in str(info.value) or "bytes" in str(info.value)
    assert _tree(tmp_path) == before
    # the longest name that fits is accepted and its file written
    fitting = "模" * 70  # 210 bytes (+ the run id, format or suffix of each kind)
    write(fitting)
    assert any(fitting in p for p in _tree(tmp_path) - before)


def test_a_log_name_counts_its_run_id_and_suffix(store: object) -> None:
    from metalab.store import FileStore

    assert isinstance(store, FileStore)
    long_run = "r" * 150
    with pytest.raises(InvalidNameError, match="bytes"):
        store.append_log(long_run, "é" * 50, "x")  # 150 + 1 + 100 + 4 bytes: too long
    store.append_log(long_run, "é" * 40, "x")
    assert store.get_log(long_run, "é" * 40) == "x"


def test_an_experiment_id_too_long_in_bytes_is_refused_before_anything_is_written(
    tmp_path: object,
) -> None:
    from metalab.store import FileStore, FileStoreConfig

    with pytest.raises(InvalidNameError, match="bytes"):
        safe_experiment_id(CJK_100 + ":1")
    with pytest.raises(InvalidNameError, match="bytes"):
        FileStoreConfig(root=f"{tmp_path}/s", experiment_id=CJK_100 + ":1")
    unscoped = FileStore(f"{tmp_path}/s")
    with pytest.raises(InvalidNameError, match="bytes"):
        unscoped.put_experiment_manifest(CJK_100 + ":1", {"x": 1})
    assert _tree(tmp_path) == set()
    ok = FileStore(f"{tmp_path}/s", experiment_id="模" * 60 + ":1")  # 180 bytes
    ok.put_data("r1", "d", {"data": 1})
    unscoped.put_experiment_manifest("模" * 60 + ":1", {"x": 1})
    assert len(ok.config.for_experiment("模" * 60 + ":1").connect().list_data("r1")) == 1


def test_metric_names_are_json_keys_not_files(tmp_path: object) -> None:
    from metalab.model import RunRecord, Status
    from metalab.store import FileStore

    assert check_name(CJK_100, "metric name") == CJK_100
    store = FileStore(f"{tmp_path}/s", experiment_id="e:1")
    store.put_run_record(RunRecord(run_id="r1", experiment_id="e:1", status=Status.SUCCESS,
                                   metrics={CJK_100: 1.5}, params={CJK_100: 2}))
    record = store.get_run_record("r1")
    assert record is not None and record.metrics == {CJK_100: 1.5}
    assert store.query_runs(None, f'metrics."{CJK_100}" = 1.5 and params."{CJK_100}" = 2')


def test_names_that_cannot_be_file_names_are_refused() -> None:
    with pytest.raises(InvalidNameError, match="use letters"):
        check_name("a\ud800b", "artifact name")


def _stepped_cjk_metric(params, seeds, capture):  # type: ignore[no-untyped-def]
    capture.metric(CJK_100, 1.0)  # a JSON key: fine
    capture.metric(CJK_100, 2.0, step=1)  # a series file "{name}.json": too long


def test_a_stepped_metric_too_long_in_bytes_fails_its_run_at_once(tmp_path: object) -> None:
    import metalab
    from metalab.execution import SerialExecutor

    op = metalab.operation(_stepped_cjk_metric)
    exp = metalab.Experiment(name="cjk", version="1", operation=op, params=metalab.grid(a=[1]),
                             context={}, seeds=metalab.seeds(base=1, replicates=1))
    metalab.run(exp, store=f"{tmp_path}/st", executor=SerialExecutor()).result()
    (run,) = metalab.load_results(f"{tmp_path}/st", experiment_id=exp.experiment_id)
    assert run.status.value == "failed"
    assert run.error is not None and run.error.type == "InvalidNameError"
    assert "bytes" in run.error.message


def test_an_experiment_id_with_a_lone_surrogate_is_refused(tmp_path: object) -> None:
    from metalab.store import FileStore

    with pytest.raises(InvalidNameError, match="UTF-8"):
        FileStore(f"{tmp_path}/s", experiment_id="e\ud800:1")
    assert not os.path.exists(f"{tmp_path}/s")
