"""JSON responses and error bodies shared by the API and the app (no routes here)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from metalab._errors import QueryError
from metalab._internal import _json
from metalab._internal._redact import redact

__all__ = ["error_body", "json_response"]


def json_response(value: Any, status_code: int = 200) -> Response:
    """``value`` as JSON (non-finite numbers as metalab writes them: texts)."""
    return Response(_json.dumps(value), status_code=status_code, media_type="application/json")


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON of an error: its message (passwords removed) and, for a query, where."""
    body: dict[str, Any] = {"error": redact(str(exc)) or type(exc).__name__,
                            "type": type(exc).__name__}
    if isinstance(exc, QueryError):
        body["query"] = exc.query
        body["position"] = exc.position
    return body
