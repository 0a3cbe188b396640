"""The JSON API of ``metalab ui`` (``/api/...``): everything the pages show.

Queries use the language of ``load_results(where=...)`` and ``metalab runs
ls --where`` (``where=``, ``columns=``, ``sort=`` as comma-separated field
names, ``-`` for descending).  Errors are JSON ``{"error", "type"}`` (plus
``query`` and ``position`` for a query error) with status 400 (bad input),
404 (no such experiment, run or file) or 501 (an optional package is
missing).  Every route is a GET; none writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import metalab.ui._export as _export
import metalab.ui._files as _files
from metalab.ui._http import json_response
from metalab.ui._views import StoreView, grouped, int_param, parse_list, view_state

__all__ = ["API_ROUTES", "plot_spec"]

#: the default number of points of one series chart
SERIES_POINTS = 2000
#: the most points a client may ask of one series (the browser never gets a whole
#: 10^6-step series unless it asks for it through the store)
SERIES_POINTS_MAX = 20_000
#: the default number of log lines returned
LOG_LINES = 200


def _view(request: Request) -> StoreView:
    view: StoreView = request.app.state.view
    return view


def _json(value: Any, status_code: int = 200) -> Response:
    return json_response(value, status_code)


def _experiment(request: Request) -> str:
    return str(request.path_params["experiment_id"])


def experiments(request: Request) -> Response:
    return _json({"experiments": _view(request).all_summaries()})


def experiment(request: Request) -> Response:
    return _json(_view(request).experiment_summary(_experiment(request)))


def fields(request: Request) -> Response:
    return _json(_view(request).fields(_experiment(request)))


def runs(request: Request) -> Response:
    """One page of runs (``after=`` cursor, ``limit=``), or with ``group=1`` the replicate table."""
    view, eid, params = _view(request), _experiment(request), request.query_params
    state = view_state(params)
    if state["group"]:
        return _json({"grouped": grouped(view, eid, state), **state})
    page = view.runs_page(eid, where=state["where"], columns=state["columns"],
                          sort=state["sort"], after=params.get("after") or None,
                          limit=state["limit"])
    return _json(page)


def _download_name(experiment_id: str, ext: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment_id)
    return f"{safe}-runs.{ext}"


def runs_csv(request: Request) -> Response:
    view, eid = _view(request), _experiment(request)
    state = view_state(request.query_params)
    header, rows = view.query_rows(eid, where=state["where"], columns=state["columns"],
                                   sort=state["sort"])
    return Response(_export.csv_bytes(header, rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="{_download_name(eid, "csv")}"'})


def runs_parquet(request: Request) -> Response:
    view, eid = _view(request), _experiment(request)
    state = view_state(request.query_params)
    columns = state["columns"] or view.default_columns(eid)
    results = view.results(eid, where=state["where"], columns=columns, sort=state["sort"])
    return Response(_export.parquet_bytes(results), media_type="application/vnd.apache.parquet",
                    headers={"Content-Disposition":
                             f'attachment; filename="{_download_name(eid, "parquet")}"'})


def snippets(request: Request) -> Response:
    eid = _experiment(request)
    state = view_state(request.query_params)
    locator = request.app.state.locator
    args = (locator, eid, state["where"], state["columns"], state["sort"])
    return _json({"python": _export.python_snippet(*args), "cli": _export.cli_snippet(*args)})


def plot_spec(params: Mapping[str, str]) -> Any:
    """The :class:`~metalab.analysis.PlotSpec` of a query string (ValidationError if bad)."""
    from metalab.analysis import PlotSpec

    known = {k: v for k, v in params.items() if k not in ("where", "token")}
    return PlotSpec.from_query(known)


def plot(request: Request) -> Response:
    """A plotly figure of the experiment's query, aggregated on the server."""
    from metalab.analysis._plots_pushdown import query_figure

    view, eid = _view(request), _experiment(request)
    spec = plot_spec(request.query_params)
    where = request.query_params.get("where") or None
    return _json(query_figure(view.scoped(eid), spec, where))


def _run_id(request: Request) -> str:
    return str(request.path_params["run_id"])


def run(request: Request) -> Response:
    return _json(_view(request).run_detail(_run_id(request)))


def series(request: Request) -> Response:
    """Line charts of the run's series ``names=`` (default: all), downsampled on the server."""
    from metalab.analysis import series_figure

    view, rid = _view(request), _run_id(request)
    names = parse_list(request.query_params.get("names"))
    if not names:
        names = view.run_detail(rid)["series"]
    points = int_param(request.query_params, "max_points", SERIES_POINTS, SERIES_POINTS_MAX)
    return _json(series_figure(view.series(rid, names), points))


def artifact(request: Request) -> Response:
    """The bytes of an artifact, by name, streamed (``inline=1``: shown in the page, images
    only)."""
    store, record = _view(request).record(_run_id(request))
    name = str(request.path_params["name"])
    chunks, media = _files.artifact_chunks(store, record, name)
    inline = request.query_params.get("inline") == "1" and media.startswith("image/")
    disposition = "inline" if inline else "attachment"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return StreamingResponse(chunks, media_type=media, headers={
        "Content-Disposition": f'{disposition}; filename="{safe}"'})


def artifact_preview(request: Request) -> Response:
    store, record = _view(request).record(_run_id(request))
    return _json(_files.artifact_preview(store, record, str(request.path_params["name"])))


def log(request: Request) -> Response:
    store, record = _view(request).record(_run_id(request))
    lines = int_param(request.query_params, "lines", LOG_LINES)
    return _json(_files.log_tail(store, record.run_id, str(request.path_params["name"]), lines))


def data(request: Request) -> Response:
    store, record = _view(request).record(_run_id(request))
    return _json(_files.data_preview(store, record.run_id, str(request.path_params["name"])))


def compare(request: Request) -> Response:
    return _json(_view(request).compare(parse_list(request.query_params.get("runs"))))


def compare_series(request: Request) -> Response:
    """Series ``name=`` of every compared run, overlaid in one chart."""
    from metalab.analysis import series_figure

    view = _view(request)
    run_ids = parse_list(request.query_params.get("runs"))
    view.compare(run_ids)  # (checks the count)
    name = request.query_params.get("name") or ""
    lines = {}
    for rid in run_ids:
        if name in view.run_detail(rid)["series"]:
            lines[rid[:12]] = view.series(rid, [name])[name]
    points = int_param(request.query_params, "max_points", SERIES_POINTS, SERIES_POINTS_MAX)
    return _json(series_figure(lines, points, y_title=name))


API_ROUTES = [
    Route("/api/experiments", experiments, methods=["GET"]),
    Route("/api/experiments/{experiment_id}", experiment, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/fields", fields, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/runs", runs, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/runs.csv", runs_csv, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/runs.parquet", runs_parquet, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/snippets", snippets, methods=["GET"]),
    Route("/api/experiments/{experiment_id}/plot", plot, methods=["GET"]),
    Route("/api/runs/{run_id}", run, methods=["GET"]),
    Route("/api/runs/{run_id}/series", series, methods=["GET"]),
    Route("/api/runs/{run_id}/artifacts/{name}", artifact, methods=["GET"]),
    Route("/api/runs/{run_id}/artifacts/{name}/preview", artifact_preview, methods=["GET"]),
    Route("/api/runs/{run_id}/logs/{name}", log, methods=["GET"]),
    Route("/api/runs/{run_id}/data/{name}", data, methods=["GET"]),
    Route("/api/compare", compare, methods=["GET"]),
    Route("/api/compare/series", compare_series, methods=["GET"]),
]
