"""The server-rendered pages of ``metalab ui`` (the URL contract).

``/`` experiments, ``/experiments/<id>`` runs (state in the query string:
``where``, ``columns``, ``sort``, ``group``, ``band``, ``after``),
``/experiments/<id>/plot`` plots, ``/runs/<run_id>`` one run,
``/compare?runs=a,b`` a comparison.  Charts, artifact previews and log
tails are fetched from the JSON API by ``static/ui.js`` when they scroll
into view.  A query error is shown on the page (with its caret), never as
a failed request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metalab._errors import MissingDependencyError, QueryError, ValidationError
from metalab.ui._views import PAGE_SIZE, StoreView, grouped, parse_list, status_class, view_state

__all__ = ["PAGE_ROUTES", "cell", "error_page"]

#: plot kinds offered by the plot page
PLOT_KINDS = ("scatter", "line", "bar", "histogram")


def cell(value: Any) -> str:
    """A value as the tables show it (floats to 6 significant digits)."""
    from metalab._internal import _json

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int | str):
        return str(value)
    return _json.dumps(value).decode()


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    templates = request.app.state.templates
    context.setdefault("title", "metalab")
    context["badge"] = status_class
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def error_page(request: Request, status: int, message: str) -> Response:
    return _render(request, "error.html", status_code=status, message=message,
                   title=f"metalab: error {status}")


def _view(request: Request) -> StoreView:
    view: StoreView = request.app.state.view
    return view


def experiments_page(request: Request) -> Response:
    return _render(request, "experiments.html", experiments=_view(request).all_infos(),
                   title="metalab: experiments")


def _query_of(state: dict[str, Any], **changes: Any) -> str:
    """The query string of the runs view with ``changes`` (empty values left out)."""
    merged = {"where": state["where"], "columns": ",".join(state["columns"]),
              "sort": ",".join(state["sort"]), "group": "1" if state["group"] else "",
              "band": state["band"] if state["band"] != "ci95" else "",
              "limit": str(state["limit"]) if state["limit"] != PAGE_SIZE else ""}
    merged.update(changes)
    return urlencode({k: v for k, v in merged.items() if v})


def _sort_links(state: dict[str, Any], columns: list[str]) -> dict[str, str]:
    """Per column, the query string that sorts by it (again: the other direction)."""
    links = {}
    current = state["sort"][0] if state["sort"] else ""
    for c in ["run_id", "status", "started_at", *columns]:
        target = f"-{c}" if current == c else c
        links[c] = _query_of(state, sort=target, after="")
    return links


def runs_page(request: Request) -> Response:
    view = _view(request)
    eid = str(request.path_params["experiment_id"])
    summary = view.experiment_info(eid)
    state = view_state(request.query_params)
    page: dict[str, Any] = {"rows": [], "columns": state["columns"], "next": None}
    table, error = None, None
    try:
        if state["group"]:
            table = grouped(view, eid, state)
        else:
            page = view.runs_page(eid, where=state["where"], columns=state["columns"],
                                  sort=state["sort"], limit=state["limit"],
                                  after=request.query_params.get("after") or None)
    except (QueryError, ValidationError, MissingDependencyError) as exc:
        error = str(exc)
    columns = page["columns"] or state["columns"]
    return _render(
        request, "runs.html", title=f"metalab: {eid}", summary=summary, state=state,
        page=page, table=table, error=error, columns=columns, fields=view.fields(eid),
        query=_query_of(state), sort_links=_sort_links(state, columns),
        next_query=_query_of(state, after=page["next"]) if page.get("next") else None,
        first_query=_query_of(state) if request.query_params.get("after") else None,
    )


def plot_page(request: Request) -> Response:
    view = _view(request)
    eid = str(request.path_params["experiment_id"])
    params = request.query_params
    summary = view.experiment_info(eid)
    return _render(request, "plot.html", title=f"metalab: plot {eid}", summary=summary,
                   fields=view.fields(eid), params=dict(params), kinds=PLOT_KINDS,
                   query=urlencode([(k, v) for k, v in params.multi_items() if k != "token"]))


def run_page(request: Request) -> Response:
    view = _view(request)
    detail = view.run_detail(str(request.path_params["run_id"]))
    return _render(request, "run.html", title=f"metalab: run {detail['run_id'][:12]}",
                   run=detail, live=detail["status"] == "running")


def compare_page(request: Request) -> Response:
    ids = parse_list(request.query_params.get("runs"))
    comparison = _view(request).compare(ids)
    return _render(request, "compare.html", title="metalab: compare", cmp=comparison,
                   runs_query=",".join(ids))


PAGE_ROUTES = [
    Route("/", experiments_page, methods=["GET"]),
    Route("/experiments/{experiment_id}", runs_page, methods=["GET"]),
    Route("/experiments/{experiment_id}/plot", plot_page, methods=["GET"]),
    Route("/runs/{run_id}", run_page, methods=["GET"]),
    Route("/compare", compare_page, methods=["GET"]),
]
