"""The ``metalab ui`` server itself: token, loopback, read-only routes, shipped assets, the CLI."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from ui_store import EXPERIMENT

import metalab
from metalab.model import RunRecord, Status
from metalab.store import make_store
from metalab.ui import create_app
from metalab.ui._serve import is_loopback, resolve_token

TOKEN = "s3cret-token"
#: how soon the API must count a new run (the server reuses counts for 0.5 s; the
#: slack is for a loaded test machine)
LIVE_WITHIN_S = 2.0


@pytest.fixture
def token_client(file_store_root: str) -> Iterator[TestClient]:
    with make_store(file_store_root) as store, TestClient(
            create_app(store, token=TOKEN), base_url="http://127.0.0.1") as c:
        yield c


def test_every_request_needs_the_token_when_one_is_set(token_client: TestClient) -> None:
    for url in ("/", "/api/experiments", f"/experiments/{EXPERIMENT}", "/static/ui.js"):
        r = token_client.get(url)
        assert r.status_code == 401, url
        assert TOKEN not in r.text
    assert token_client.get("/api/experiments", params={"token": "wrong"}).status_code == 401
    assert token_client.get("/api/experiments",
                            headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = token_client.get("/", params={"token": TOKEN})
    assert first.status_code == 200
    # the first request sets a cookie, so the page's links and scripts need no token
    assert token_client.get("/api/experiments").status_code == 200


def test_loopback_server_refuses_other_host_names(file_client: TestClient) -> None:
    assert file_client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert file_client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert file_client.get("/", headers={"Host": "evil.example:8765"}).status_code == 400


def test_host_and_token_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("127.0.0.1", "t") == "t"
    generated = resolve_token("0.0.0.0", None)
    assert generated and len(generated) >= 24
    assert resolve_token("0.0.0.0", None) != generated
    with pytest.raises(metalab.ConfigError, match="--token"):
        resolve_token("0.0.0.0", None, generate=False)
    with pytest.raises(metalab.ConfigError, match="empty"):
        resolve_token("0.0.0.0", " ")
    auto = resolve_token("127.0.0.1", "auto")  # (loopback is shared on a login node)
    assert auto and auto != "auto" and len(auto) >= 24


def _paths(app: Any) -> list[tuple[str, set[str]]]:
    out = []
    for route in app.routes:
        if isinstance(route, Route):
            out.append((route.path, set(route.methods or ())))
        elif isinstance(route, Mount):
            out.append((route.path, {"GET", "HEAD"}))
    return out


def test_no_endpoint_writes(file_client: TestClient) -> None:
    routes = _paths(file_client.app)
    assert routes and all(methods <= {"GET", "HEAD"} for _, methods in routes)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = file_client.request(method, "/api/experiments")
        assert r.status_code == 405


def test_security_headers_and_no_external_assets(file_client: TestClient) -> None:
    r = file_client.get("/")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    for page in ("/", f"/experiments/{EXPERIMENT}"):
        html = file_client.get(page).text
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not src.startswith(("http:", "https:", "//")), src
    js = file_client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert js.headers["content-type"].startswith("text/javascript")
    ui_js = file_client.get("/static/ui.js")
    assert ui_js.status_code == 200 and "IntersectionObserver" in ui_js.text
    assert file_client.get("/static/ui.css").status_code == 200


def test_templates_and_static_files_are_in_the_package() -> None:
    import metalab.ui

    here = Path(metalab.ui.__file__).parent
    for name in ("base.html", "runs.html", "run.html", "compare.html", "plot.html",
                 "experiments.html", "error.html"):
        assert (here / "templates" / name).is_file()
    assert (here / "static" / "ui.js").is_file() and (here / "static" / "ui.css").is_file()


def test_counts_move_as_runs_are_written(tmp_path: Path) -> None:
    root = tmp_path / "live"
    with make_store(str(root), experiment_id="live:1") as writer, TestClient(
            create_app(make_store(str(root))), base_url="http://127.0.0.1") as client:
        writer.put_run_record(RunRecord(run_id="aaaa0000aaaa0000", experiment_id="live:1",
                                        status=Status.SUCCESS, params={"x": 1}))
        first = client.get("/api/experiments").json()["experiments"][0]["counts"]
        assert first["success"] == 1 and first["running"] == 0
        now = datetime.now(UTC)
        writer.put_run_record(RunRecord(run_id="bbbb0000bbbb0000", experiment_id="live:1",
                                        status=Status.RUNNING, params={"x": 2},
                                        started_at=now, heartbeat_at=now))
        written = time.monotonic()
        while True:  # the counts move within 2 s (the pages poll every second)
            second = client.get("/api/experiments").json()["experiments"][0]["counts"]
            if second["running"] == 1 or time.monotonic() - written > LIVE_WITHIN_S:
                break
            time.sleep(0.05)
        assert second["success"] == 1 and second["running"] == 1
        assert time.monotonic() - written <= LIVE_WITHIN_S


def test_ui_command_serves_the_store(monkeypatch: pytest.MonkeyPatch,
                                     file_store_root: str) -> None:
    import metalab.ui
    from metalab.cli import cli

    calls: list[dict[str, Any]] = []

    def fake_serve(store: Any, **kwargs: Any) -> None:
        calls.append({"experiments": store.list_experiments(), **kwargs})

    monkeypatch.setattr(metalab.ui, "serve", fake_serve)
    out = CliRunner().invoke(cli, ["ui", "--store", file_store_root, "--port", "9999",
                                   "--no-browser", "--host", "0.0.0.0", "--token", "abc"])
    assert out.exit_code == 0, out.output
    (call,) = calls
    assert call["experiments"] == [EXPERIMENT]
    assert call["port"] == 9999 and call["host"] == "0.0.0.0" and call["token"] == "abc"
    assert call["open_browser"] is False
    missing = CliRunner().invoke(cli, ["ui", "--store", str(Path(file_store_root) / "nope")])
    assert missing.exit_code == 1 and "Error" in missing.output


def test_help_lists_the_options() -> None:
    from metalab.cli import cli

    out = CliRunner().invoke(cli, ["ui", "--help"])
    for option in ("--store", "--host", "--port", "--token", "--no-browser"):
        assert option in out.output


def test_serve_prints_the_url_with_a_generated_token_off_loopback(
        monkeypatch: pytest.MonkeyPatch, file_store_root: str) -> None:
    import uvicorn

    from metalab.ui import serve

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append({"app": app, **kw}))
    printed: list[str] = []
    with make_store(file_store_root) as store:
        serve(store, host="0.0.0.0", port=9876, open_browser=False, echo=printed.append)
        serve(store, open_browser=False, echo=printed.append)
    token = printed[0].split("?token=")[1].split()[0]
    assert len(token) >= 24 and ran[0]["host"] == "0.0.0.0" and ran[0]["port"] == 9876
    with TestClient(ran[0]["app"], base_url="http://192.0.2.1") as c:
        assert c.get("/api/experiments").status_code == 401
        assert c.get("/api/experiments", params={"token": token}).status_code == 200
    assert "http://127.0.0.1:8765/ " in printed[1] and "token" not in printed[1]


def test_one_experiment_store_and_a_lost_run(tmp_path: Path) -> None:
    """A store scoped to one experiment (or the path of its folder) serves like a collection;
    a running record whose heartbeat stopped shows as lost."""
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with make_store(str(tmp_path / "exps"), experiment_id="one:1") as writer:
        writer.put_run_record(RunRecord(run_id="cccc0000cccc0000", experiment_id="one:1",
                                        status=Status.RUNNING, params={"x": 1},
                                        started_at=long_ago, heartbeat_at=long_ago))
        folder = writer.get_working_directory()
    for target in (make_store(str(tmp_path / "exps"), experiment_id="one:1"),
                   make_store(folder)):
        with target as store, TestClient(create_app(store),
                                         base_url="http://127.0.0.1") as client:
            (exp,) = client.get("/api/experiments").json()["experiments"]
            assert exp["experiment_id"] == "one:1" and exp["counts"]["lost"] == 1
            rows = client.get("/api/experiments/one:1/runs").json()["rows"]
            assert [r["status"] for r in rows] == ["lost"]
            assert client.get("/api/runs/cccc0000cccc0000").json()["status"] == "lost"
            page = client.get("/experiments/one:1")
            assert page.status_code == 200 and "badge-lost" in page.text


def test_serve_never_prints_the_database_password(
        monkeypatch: pytest.MonkeyPatch, file_store_root: str) -> None:
    import uvicorn

    from metalab.ui import serve

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    printed: list[str] = []
    with make_store(file_store_root) as store:
        serve(store, open_browser=False, echo=printed.append,
              locator="postgresql://alice:hunter2@db.example:5432/metalab")
    (line,) = printed
    assert "hunter2" not in line and "alice" in line and "db.example:5432/metalab" in line


def test_two_servers_on_one_host_keep_their_own_token_cookies(file_store_root: str) -> None:
    cookies: dict[str, str] = {}
    with make_store(file_store_root) as store:
        apps = {tok: create_app(store, token=tok) for tok in ("token-one", "token-two")}
        for tok, app in apps.items():
            with TestClient(app, base_url="http://127.0.0.1") as c:
                first = c.get("/", params={"token": tok})
                assert first.status_code == 200
                cookies.update(first.cookies)
        assert len(cookies) == 2  # (one cookie each: the second did not replace the first)
        for app in apps.values():
            with TestClient(app, base_url="http://127.0.0.1", cookies=cookies) as c:
                assert c.get("/api/experiments").status_code == 200


def test_threads_opening_one_experiment_at_once_leave_no_store_open(
        file_store_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests opening an experiment's store at the same moment: the view keeps
    one, and every store it opened is closed when the view closes."""
    import threading

    from metalab.ui import _views

    threads = 2
    both_inside = threading.Barrier(threads, timeout=10)
    opened: list[Any] = []
    closed: list[Any] = []

    def make_counted(*args: Any, **kwargs: Any) -> Any:
        store = make_store(*args, **kwargs)
        if kwargs.get("experiment_id"):
            real_close = store.close

            def close() -> None:
                closed.append(store)
                real_close()

            store.close = close
            opened.append(store)
            both_inside.wait()  # (both threads have opened one before either keeps it)
        return store

    monkeypatch.setattr(_views, "make_store", make_counted)
    with make_store(file_store_root) as root:
        view = _views.StoreView(root)
        got: list[Any] = []
        workers = [threading.Thread(target=lambda: got.append(view.scoped(EXPERIMENT)))
                   for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(opened) == threads and got[0] is got[1]
        assert view.scoped(EXPERIMENT) is got[0]
        view.close()
    assert sorted(map(id, closed)) == sorted(map(id, opened))
