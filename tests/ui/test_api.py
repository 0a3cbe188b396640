"""The JSON API and the pages of ``metalab ui`` on a FileStore and on a PostgresStore."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from click.testing import CliRunner
from ui_store import EXPERIMENT, RUNNING_ID, SCRIPT, SERIES_STEPS, png_bytes

API = f"/api/experiments/{EXPERIMENT}"


def _runs(client: Any, **params: Any) -> dict[str, Any]:
    r = client.get(f"{API}/runs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _run_id(client: Any, where: str) -> str:
    rows = _runs(client, where=where, limit=1)["rows"]
    assert rows, where
    return str(rows[0]["run_id"])


def test_experiments_show_status_counts_progress_and_tags(client: Any) -> None:
    (exp,) = client.get("/api/experiments").json()["experiments"]
    assert exp["experiment_id"] == EXPERIMENT
    assert exp["counts"]["success"] == 12
    assert exp["counts"]["failed"] == 6
    assert exp["counts"]["running"] == 1
    assert exp["total"] == 19 and exp["finished"] == 18
    assert exp["tags"] == ["demo", SCRIPT]
    assert exp["last_activity"]
    one = client.get(API).json()
    assert one["counts"] == exp["counts"]


def test_runs_page_fetches_only_the_chosen_columns(client: Any) -> None:
    page = _runs(client, where="params.lr < 0.5", columns="metrics.score", sort="-metrics.score")
    assert page["columns"] == ["metrics.score"]
    assert len(page["rows"]) == 12
    assert {k for row in page["rows"] for k in row} == {
        "run_id", "experiment_id", "status", "started_at", "metrics.score"}
    scores = [row["metrics.score"] for row in page["rows"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("sort", "limit"), [
    ("", 4), ("-metrics.score", 4), ("params.model,-params.lr", 4), ("-started_at", 4),
    ("duration_ms", 1), ("-duration_ms", 2), ("-duration_ms", 1), ("duration_ms", 2)])
def test_keyset_pages_list_every_run_once_in_order(client: Any, sort: str, limit: int) -> None:
    whole = [r["run_id"] for r in _runs(client, sort=sort, limit=500)["rows"]]
    assert len(whole) == 19
    seen: list[str] = []
    after = ""
    while True:
        page = _runs(client, sort=sort, limit=limit, after=after)
        seen += [r["run_id"] for r in page["rows"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == whole


def test_query_errors_point_at_the_position(client: Any) -> None:
    r = client.get(f"{API}/runs", params={"where": "params.lr < and"})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "QuerySyntaxError" and body["position"] == 12
    r = client.get(f"{API}/runs", params={"where": "metrics.scor > 1"})
    assert r.status_code == 400 and r.json()["type"] == "UnknownFieldError"
    assert "metrics.score" in r.json()["error"]  # (the close name)
    page = client.get(f"/experiments/{EXPERIMENT}", params={"where": "params.lr < and"})
    assert page.status_code == 200
    assert "  params.lr &lt; and\n              ^" in page.text


def test_bad_cursor_limit_and_sort_are_clear_errors(client: Any) -> None:
    r = client.get(f"{API}/runs", params={"sort": "tags"})
    assert r.status_code == 400 and "tags" in r.json()["error"]
    assert client.get(f"{API}/runs", params={"after": "%%%"}).status_code == 400
    r = client.get(f"{API}/runs", params={"limit": "0"})
    assert r.status_code == 400 and "limit" in r.json()["error"]


def test_grouped_replicates_collapse_seeds(client: Any) -> None:
    body = _runs(client, group="1", columns="metrics.score", band="sem")
    assert body["group"] is True and body["band"] == "sem"
    assert body["grouped"]["rows"]
    assert client.get(f"{API}/runs", params={"group": "1", "band": "iqr"}).status_code == 400


def test_csv_and_parquet_downloads_hold_the_query(client: Any) -> None:
    r = client.get(f"{API}/runs.csv", params={"where": 'status = "failed"',
                                              "columns": "params.lr"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    lines = r.text.strip().splitlines()
    assert lines[0] == "run_id,experiment_id,status,started_at,params.lr"
    assert len(lines) == 1 + 6 and all(",failed," in line for line in lines[1:])
    r = client.get(f"{API}/runs.parquet", params={"where": 'status = "failed"'})
    assert r.status_code == 200 and r.content[:4] == b"PAR1"


def test_copy_as_python_and_cli_reproduce_the_view(client: Any, file_store_root: str) -> None:
    import metalab
    from metalab.cli import cli

    params = {"where": "params.lr < 0.5", "columns": "params.lr,metrics.score",
              "sort": "-metrics.score"}
    snippets = client.get(f"{API}/snippets", params=params).json()
    expected = [r["run_id"] for r in _runs(client, **params, limit=500)["rows"]]
    python = snippets["python"].replace("'./experiments'", repr(file_store_root))
    scope: dict[str, Any] = {}
    exec(python, scope)
    assert scope["results"].run_ids == expected
    assert isinstance(scope["results"], metalab.Results)
    args = shlex.split(snippets["cli"].replace("./experiments", file_store_root))
    out = CliRunner().invoke(cli, [*args[1:], "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert [line.split(",")[0] for line in out.output.splitlines()[1:]] == expected


def test_run_detail_of_a_failed_run_has_error_and_traceback(client: Any) -> None:
    rid = _run_id(client, 'status = "failed"')
    run = client.get(f"/api/runs/{rid}").json()
    assert run["status"] == "failed"
    assert run["error"]["type"] == "ValueError" and "diverged" in run["error"]["message"]
    assert "Traceback" in run["error"]["traceback"]
    assert run["series"] == ["loss"] and run["logs"] == ["run"]
    page = client.get(f"/runs/{rid}")
    assert page.status_code == 200 and "diverged at lr=1.0" in page.text


def test_series_are_downsampled_on_the_server(client: Any) -> None:
    rid = _run_id(client, 'status = "success"')
    fig = client.get(f"/api/runs/{rid}/series", params={"names": "loss", "max_points": 50}).json()
    (trace,) = fig["data"]
    assert 0 < len(trace["x"]) <= 50 and SERIES_STEPS > 50
    assert fig["layout"]["yaxis"]["title"]["text"] == "loss"  # (the series' name)
    full = client.get(f"/api/runs/{rid}/series").json()
    assert len(full["data"]) == 1
    assert client.get(f"/api/runs/{rid}/series", params={"names": "nope"}).status_code == 404
    too_many = client.get(f"/api/runs/{rid}/series", params={"names": "loss", "max_points": 10**9})
    assert too_many.status_code == 400 and "at most" in too_many.text


def _artifact_run(client: Any) -> str:
    return _run_id(client, 'params.lr = 0.01 and params.model = "resnet"')


def test_artifacts_are_previewed_by_kind_and_downloadable(client: Any) -> None:
    rid = _artifact_run(client)
    run = client.get(f"/api/runs/{rid}").json()
    assert sorted(a["name"] for a in run["artifacts"]) == ["curve", "readme", "summary", "weights"]
    kinds = {n: client.get(f"/api/runs/{rid}/artifacts/{n}/preview").json()["preview"]
             for n in ("curve", "readme", "summary", "weights")}
    assert kinds["curve"]["type"] == "image"
    assert kinds["readme"] == {"type": "text", "text": "plain text artifact\nline 2",
                               "truncated": False}
    assert kinds["summary"]["type"] == "json" and SCRIPT in kinds["summary"]["text"]
    (arr,) = kinds["weights"]["arrays"]
    assert arr["shape"] == [3, 4] and arr["min"] == 0 and arr["max"] == 11
    img = client.get(f"/api/runs/{rid}/artifacts/curve", params={"inline": "1"})
    assert img.headers["content-type"] == "image/png" and img.content == png_bytes()
    assert img.headers["content-disposition"].startswith("inline")
    raw = client.get(f"/api/runs/{rid}/artifacts/summary")
    assert raw.headers["content-disposition"].startswith("attachment")
    assert raw.headers["content-type"] == "application/octet-stream"


def test_captured_data_and_log_tail(client: Any) -> None:
    rid = _artifact_run(client)
    data = client.get(f"/api/runs/{rid}/data/confusion").json()
    assert "[\n" in data["text"] and "4" in data["text"]
    log = client.get(f"/api/runs/{rid}/logs/run", params={"lines": 1}).json()
    assert len(log["lines"]) == 1 and log["truncated"] is True
    live = client.get(f"/api/runs/{RUNNING_ID}/logs/run").json()
    assert live["lines"] == ["step 1", "step 2"]
    assert client.get(f"/api/runs/{RUNNING_ID}").json()["status"] == "running"


@pytest.mark.parametrize("path", [
    "/api/runs/{rid}/artifacts/..%2F..%2Fruns%2F{rid}.json",
    "/api/runs/{rid}/artifacts/%2Fetc%2Fpasswd",
    "/api/runs/{rid}/artifacts/%2E%2E",
    "/api/runs/{rid}/artifacts/curve.png",
    "/api/runs/{rid}/artifacts/..%2Fcurve/preview",
    "/api/runs/{rid}/logs/..%2F..%2Fruns%2F{rid}.json",
    "/api/runs/{rid}/logs/%2e%2e",
    "/api/runs/{rid}/data/..%2Fconfusion",
    "/api/runs/..%2F{rid}",
    "/api/runs/{rid}%2F..%2F..",
    "/runs/..%2F..%2Fetc%2Fpasswd",
    "/static/..%2F_app.py",
    "/static/../_app.py",
])
def test_files_are_served_by_name_never_by_path(client: Any, path: str) -> None:
    rid = _artifact_run(client)
    r = client.get(path.format(rid=rid))
    assert r.status_code == 404, r.text


def test_compare_highlights_differing_params(client: Any) -> None:
    a = _run_id(client, 'params.lr = 0.01 and params.model = "resnet"')
    b = _run_id(client, 'params.lr = 0.1 and params.model = "resnet"')
    cmp = client.get("/api/compare", params={"runs": f"{a},{b}"}).json()
    assert cmp["params_differ"] == ["lr"]
    assert cmp["params"]["model"] == ["resnet", "resnet"]
    assert len(cmp["metrics"]["score"]) == 2
    fig = client.get("/api/compare/series", params={"runs": f"{a},{b}", "name": "loss"}).json()
    assert len(fig["data"]) == 2 and fig["layout"]["yaxis"]["title"]["text"] == "loss"
    page = client.get("/compare", params={"runs": f"{a},{b}"})
    assert page.status_code == 200 and 'class="differs"' in page.text
    assert client.get("/api/compare", params={"runs": a}).status_code == 400
    many = ",".join(f"{i:016x}" for i in range(21))
    assert client.get("/api/compare", params={"runs": many}).status_code == 400
    assert client.get("/api/compare", params={"runs": f"{a},nope"}).status_code == 404


def test_plot_is_a_figure_of_the_query(client: Any) -> None:
    r = client.get(f"{API}/plot", params={"kind": "scatter", "x": "params.lr",
                                          "y": "metrics.score"})
    assert r.status_code == 200 and r.json()["data"]
    assert client.get(f"{API}/plot", params={"kind": "pie", "x": "params.lr"}).status_code == 400
    page = client.get(f"/experiments/{EXPERIMENT}/plot", params={"x": "params.lr",
                                                                "y": "metrics.score"})
    assert page.status_code == 200 and 'class="chart big"' in page.text


def test_a_line_with_its_band_sends_at_most_max_points(client: Any) -> None:
    """6 means over seeds, each with an upper and a lower band point: 18 points; within
    max_points=10 the line is thinned so the band fits too."""
    r = client.get(f"{API}/plot", params={"kind": "line", "x": "params.lr", "y": "metrics.score",
                                          "group": "params.model", "max_points": "10"})
    assert r.status_code == 200, r.text
    traces = r.json()["data"]
    assert any(t.get("fill") == "toself" for t in traces)
    assert 0 < sum(len(t["y"]) for t in traces) <= 10


def test_unknown_experiment_and_run_are_404(client: Any) -> None:
    assert client.get("/api/experiments/nope:1").status_code == 404
    assert client.get("/api/runs/ffffffffffffffff").status_code == 404
    r = client.get("/runs/ffffffffffffffff")
    assert r.status_code == 404 and "no run" in r.text


@pytest.mark.parametrize("page", ["/", f"/experiments/{EXPERIMENT}", "/runs/{rid}",
                                  "/compare?runs={rid},{other}", f"/experiments/{EXPERIMENT}/plot"])
def test_user_strings_render_as_text(client: Any, page: str) -> None:
    rid = _run_id(client, f"params.model = {SCRIPT!r}")
    other = _artifact_run(client)
    r = client.get(page.format(rid=rid, other=other))
    assert r.status_code == 200
    assert SCRIPT not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_pages_render_the_view_state(client: Any) -> None:
    r = client.get(f"/experiments/{EXPERIMENT}", params={
        "where": "params.lr < 0.5", "columns": "params.lr,metrics.score",
        "sort": "-metrics.score", "group": ""})
    assert r.status_code == 200
    assert r.text.count('class="run-link"') == 12
    assert "badge-running" not in r.text.split('id="runs"')[1]
    assert "copy as Python" in r.text and "runs.parquet?" in r.text
    everything = client.get(f"/experiments/{EXPERIMENT}")
    body = everything.text.split('id="runs"')[1]
    assert "badge-running" in body and "badge-failed" in body
