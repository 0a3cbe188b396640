"""The files of a run as the UI serves them: no file outside the store through a link,
bounded reads of large files, clear messages for files that cannot be previewed."""

from __future__ import annotations

import io
import shutil
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.model import RunRecord, Status
from metalab.store import make_store

EXP = "files"
RID = "r1"
SECRET = "outside secret text"


def _fill(root: Path) -> Any:
    store = make_store(str(root), experiment_id=EXP)
    store.put_artifact(RID, "readme", b"inside text", kind="text", format="txt")
    store.put_run_record(RunRecord(
        run_id=RID, experiment_id=EXP, status=Status.SUCCESS, params={"x": 1},
        seed={"root_seed": 1, "replicate_index": 0}, started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC)))  # (no artifacts listed: the UI asks the store)
    store.append_log(RID, "run", "inside log\n")
    store.put_data(RID, "table", {"data": [1, 2]})
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    s = _fill(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.txt"
    path.write_text(SECRET)
    return path


def _client(store: Any) -> Any:
    from starlette.testclient import TestClient

    from metalab.ui import create_app

    return TestClient(create_app(store), base_url="http://127.0.0.1")


def _exp_folder(store: Any) -> Path:
    return Path(store.get_working_directory())


def _replace_with_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def test_a_linked_artifact_or_log_is_never_served(store: Any, outside: Path) -> None:
    folder = _exp_folder(store)
    _replace_with_link(folder / "artifacts" / RID / "readme.txt", outside)
    _replace_with_link(folder / "logs" / f"{RID}_run.log", outside)
    client = _client(store)
    for url in (f"/api/runs/{RID}/artifacts/readme", f"/api/runs/{RID}/artifacts/readme/preview",
                f"/api/runs/{RID}/logs/run"):
        r = client.get(url)
        assert r.status_code == 404, (url, r.text)
        assert SECRET not in r.text and str(outside) not in r.text
        assert str(folder) not in r.text  # (no path of this machine in the browser)
    assert "readable artifact 'readme'" in client.get(
        f"/api/runs/{RID}/artifacts/readme/preview").json()["error"]
    with pytest.raises(metalab.NotFoundError, match=r"readme\.txt leads outside"):
        store.open_artifact(RID, "readme")
    with pytest.raises(metalab.NotFoundError, match=r"r1_run\.log leads outside"):
        store.get_log(RID, "run")
    assert store.list_logs(RID) == []


def test_a_link_inside_the_store_is_refused_too(store: Any) -> None:
    folder = _exp_folder(store)
    _replace_with_link(folder / "logs" / f"{RID}_run.log", folder / "runs" / f"{RID}.json")
    with pytest.raises(metalab.NotFoundError, match="is a symbolic link"):
        store.get_log(RID, "run")


def test_a_linked_folder_leading_outside_is_refused(store: Any, tmp_path: Path) -> None:
    folder = _exp_folder(store)
    art, res = folder / "artifacts" / RID, folder / "results" / RID
    for sub in (art, res):  # (the same folder, its manifest too, outside the store)
        shutil.copytree(sub, tmp_path / "elsewhere" / sub.parent.name)
        shutil.rmtree(sub)
        sub.symlink_to(tmp_path / "elsewhere" / sub.parent.name)
    (art / "readme.txt").write_text(SECRET)
    with pytest.raises(metalab.NotFoundError, match="leads outside"):
        store.open_artifact(RID, "readme")
    with pytest.raises(metalab.NotFoundError, match="leads outside"):
        store.get_data(RID, "table")
    r = _client(store).get(f"/api/runs/{RID}/data/table")
    assert r.status_code == 404 and SECRET not in r.text


def test_a_linked_data_item_is_not_listed(store: Any, outside: Path) -> None:
    data = _exp_folder(store) / "results" / RID / "table.json"
    _replace_with_link(data, outside)
    assert store.list_data(RID) == []
    with pytest.raises(metalab.NotFoundError, match="leads outside"):
        store.get_data(RID, "table")


def test_a_folder_named_like_a_log_is_not_a_log(store: Any) -> None:
    (_exp_folder(store) / "logs" / f"{RID}_x.log").mkdir()
    assert store.list_logs(RID) == ["run"]
    r = _client(store).get(f"/api/runs/{RID}/logs/x")
    assert r.status_code == 404 and "no log 'x'" in r.json()["error"]


#: the size of the large log (50 MB)
BIG_LOG_BYTES = 50 * 1000 * 1000


def test_the_tail_of_a_large_log_reads_only_its_end(store: Any) -> None:
    line = b"x" * 99 + b"\n"
    path = _exp_folder(store) / "logs" / f"{RID}_big.log"
    with open(path, "wb") as fh:
        fh.write(line * (BIG_LOG_BYTES // len(line)) + b"last line\n")
    client = _client(store)
    tracemalloc.start()
    try:
        r = client.get(f"/api/runs/{RID}/logs/big", params={"lines": 10})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    body = r.json()
    assert body["lines"][-1] == "last line" and len(body["lines"]) == 10
    assert body["truncated"] is True
    assert peak < BIG_LOG_BYTES // 20, peak


def test_tail_keeps_short_logs_whole_and_cuts_long_lines(store: Any) -> None:
    from metalab.ui._files import _tail

    assert _tail(io.BytesIO(b"a\nb\n"), 5) == (["a", "b"], False)
    assert _tail(io.BytesIO(b"a\nb\nc"), 2) == (["b", "c"], True)
    lines, more = _tail(io.BytesIO(b"z" * 200_000 + b"\nend\n"), 1)
    assert lines == ["end"] and more


def test_previews_and_downloads_do_not_read_large_artifacts_whole(store: Any) -> None:
    from metalab.ui._files import TEXT_PREVIEW_BYTES

    size = 20 * 1000 * 1000
    store.put_artifact(RID, "big", b"y" * size, kind="text", format="txt")
    opened: list[Any] = []
    real_open = type(store).open_artifact

    def spy(self: Any, run_id: str, name: str) -> Any:
        fh = real_open(self, run_id, name)
        opened.append(fh)
        return fh

    client = _client(store)
    tracemalloc.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(store), "open_artifact", spy)
            preview = client.get(f"/api/runs/{RID}/artifacts/big/preview").json()["preview"]
            with client.stream("GET", f"/api/runs/{RID}/artifacts/big") as r:
                total = sum(len(chunk) for chunk in r.iter_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert preview["truncated"] is True and len(preview["text"]) == TEXT_PREVIEW_BYTES
    assert total == size
    assert peak < size // 4, peak
    assert opened and all(fh.closed for fh in opened)


def test_numpy_previews_of_odd_arrays_say_what_they_are(store: Any) -> None:
    np = pytest.importorskip("numpy")
    raw = io.BytesIO()
    np.save(raw, np.arange(6.0))
    store.put_artifact(RID, "raw", raw.getvalue(), kind="numpy", format="npy")
    cplx = io.BytesIO()
    np.savez(cplx, z=np.array([1 + 2j, 3 - 1j]))
    store.put_artifact(RID, "cplx", cplx.getvalue(), kind="numpy", format="npz")
    store.put_artifact(RID, "junk", b"not an array", kind="numpy", format="npz")
    client = _client(store)
    raw_p = client.get(f"/api/runs/{RID}/artifacts/raw/preview")
    assert raw_p.status_code == 200, raw_p.text
    (arr,) = raw_p.json()["preview"]["arrays"]
    assert arr["shape"] == [6] and arr["max"] == 5.0
    cplx_p = client.get(f"/api/runs/{RID}/artifacts/cplx/preview")
    assert cplx_p.status_code == 200, cplx_p.text
    (z,) = cplx_p.json()["preview"]["arrays"]
    assert z["dtype"] == "complex128" and z["shape"] == [2] and "values" not in z
    junk = client.get(f"/api/runs/{RID}/artifacts/junk/preview")
    assert junk.status_code == 200 and "unreadable array" in junk.json()["preview"]["reason"]
