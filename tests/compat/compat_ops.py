"""Operations and resolvers of the compatibility tests (importable by process and Dask workers)."""

from __future__ import annotations

from typing import Any

from metalab.definition import operation


def to_int_resolver(context_meta: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The original's resolver example: float sample counts become ints, plus a derived param."""
    n = int(params["n"])
    return {**params, "n": n, "half": n // 2, **context_meta}


def mark_resolved(context_meta: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Adds one derived key to any params."""
    return {**params, "resolved": True}


def not_a_dict(context_meta: dict[str, Any], params: dict[str, Any]) -> Any:
    return [1]


class ScaleResolver:
    """An object resolver (the original's ParamResolver protocol) with state."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def resolve(self, context_meta: dict[str, Any], params_raw: dict[str, Any]) -> dict[str, Any]:
        return {**params_raw, "scaled": params_raw["x"] * self.factor}


@operation
def record_params(params, capture):
    """Stores the params it was given as metrics, so a test sees what the worker received."""
    for key, value in params.items():
        capture.metric(f"got_{key}", value)


@operation
def with_data(params, capture):
    """Captures structured data and an artifact, for derived metrics and reducers."""
    capture.metric("x", params["x"])
    capture.data("curve", [params["x"] * i for i in range(4)])
    capture.artifact("history", {"values": [params["x"], params["x"] + 1]})


@operation
def fails_on_two(params, capture):
    if params["x"] == 2:
        raise ValueError("x must not be 2")
    capture.metric("value", params["x"])


def data_sum(run) -> dict[str, Any]:
    """A derived metric that reads the run's captured data."""
    return {"curve_sum": sum(run.data("curve"))}


class KeyedResolver:
    """A resolver instance holding a secret and an object that is no JSON (never recorded)."""

    __slots__ = ("api_key", "model")

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.model = object()

    def resolve(self, context_meta: dict[str, Any], params_raw: dict[str, Any]) -> dict[str, Any]:
        return dict(params_raw)


class DescribedResolver(ScaleResolver):
    """A resolver instance that says what of it to record."""

    def to_manifest_dict(self) -> dict[str, Any]:
        return {"factor": self.factor}

    @classmethod
    def from_manifest_dict(cls, d: dict[str, Any]) -> DescribedResolver:
        return cls(d["factor"])
