"""The chart settings, :class:`PlotSpec` (see :mod:`metalab.analysis._plots`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from metalab._errors import QueryError, ValidationError
from metalab.analysis._plots_data import TOP_FIELDS
from metalab.analysis._plots_stats import BANDS

__all__ = ["KINDS", "PlotSpec", "check_field"]

#: chart kinds
KINDS = ("scatter", "line", "bar", "histogram")
#: ``bins`` must lie in this range
BINS_RANGE = (1, 1000)
#: ``max_points`` must lie in this range
MAX_POINTS_RANGE = (10, 10_000_000)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def check_field(key: str, value: Any) -> str | None:
    """A field name as queries spell it (``params.lr``), or ValidationError naming ``key``."""
    if value is None:
        return None
    from metalab.query import parse_field

    allowed = ("params.<name>, metrics.<name>, derived.<name> or "
               + ", ".join(TOP_FIELDS))
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{key}={value!r} is not a field name; use {allowed}")
    try:
        field = parse_field(value)
    except QueryError as exc:
        raise ValidationError(f"{key}={value!r} is not a field name ({exc}); use {allowed}") \
            from exc
    if field.name or field.ns in TOP_FIELDS:
        return field.path
    raise ValidationError(f"{key}={value!r} cannot be plotted; use {allowed}")


def _check_int(key: str, value: Any, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{key}={value!r} must be an integer from {low} to {high}")
    return value


@dataclasses.dataclass(frozen=True)
class PlotSpec:
    """What a chart shows.  Immutable and hashable; validated on creation.

    * ``kind``: ``"scatter"``, ``"line"``, ``"bar"`` or ``"histogram"``.
    * ``x``, ``y``: field names as in queries (``"params.lr"``,
      ``"metrics.loss"``, ``"derived.z"``, ``"duration_ms"``).  scatter and
      line need both; bar needs ``x`` (without ``y`` it counts runs);
      histogram bins ``x`` (or ``y`` when ``x`` is ``None``).
    * ``group``: a field (typically a param) whose values get one colour each.
    * ``over_seeds``: aggregate the runs sharing an ``x`` value (and group)
      into their mean with a ``band``: with ``x`` and ``group`` naming the
      params that vary, those runs are a case's seed replicates.
    * ``band``: ``"std"``, ``"sem"``, ``"ci95"`` (Student's t) or ``None``.
    * ``bins``: histogram bins; ``max_points``: the most points a figure holds.

    Raises:
        ValidationError: a bad value (the message names the key and what is allowed).
    """

    kind: str = "scatter"
    x: str | None = None
    y: str | None = None
    group: str | None = None
    over_seeds: bool = True
    band: str | None = "ci95"
    bins: int = 50
    max_points: int = 5000

    #: the keys of :meth:`to_query` / :meth:`from_query`
    QUERY_KEYS: ClassVar[tuple[str, ...]] = (
        "kind", "x", "y", "group", "over_seeds", "band", "bins", "max_points")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"kind={self.kind!r} is not a chart kind; use one of "
                                  + ", ".join(KINDS))
        for key in ("x", "y", "group"):
            object.__setattr__(self, key, check_field(key, getattr(self, key)))
        if not isinstance(self.over_seeds, bool):
            raise ValidationError(f"over_seeds={self.over_seeds!r} must be True or False")
        if self.band is not None and self.band not in BANDS:
            raise ValidationError(f"band={self.band!r} is not a band; use one of "
                                  + ", ".join(BANDS) + " or None")
        _check_int("bins", self.bins, BINS_RANGE)
        _check_int("max_points", self.max_points, MAX_POINTS_RANGE)
        if self.kind in ("scatter", "line") and (self.x is None or self.y is None):
            raise ValidationError(f"a {self.kind} chart needs both x and y (field names such "
                                  "as x='params.lr', y='metrics.loss')")
        if self.kind == "bar" and self.x is None:
            raise ValidationError("a bar chart needs x (the field whose values are the bars)")
        if self.kind == "histogram" and self.x is None and self.y is None:
            raise ValidationError("a histogram needs x (the field to bin)")

    # ------------------------------------------------------------ query string
    @classmethod
    def from_query(cls, query: Mapping[str, str], *, ignore: Iterable[str] = ()) -> PlotSpec:
        """The spec of a URL query (``{"kind": "line", "x": "params.lr", ...}``).

        Missing keys take their defaults; ``"none"`` or ``""`` clears ``x``,
        ``y``, ``group`` or ``band``; ``over_seeds`` takes true/false (1/0,
        yes/no, on/off).  Keys in ``ignore`` (e.g. the page's ``where``) are
        skipped.

        Raises:
            ValidationError: an unknown key or a bad value (named, with what is allowed).
        """
        skip = set(ignore)
        unknown = sorted(k for k in query if k not in cls.QUERY_KEYS and k not in skip)
        if unknown:
            raise ValidationError(f"unknown chart setting(s) {', '.join(map(repr, unknown))}; "
                                  f"use {', '.join(cls.QUERY_KEYS)}")
        args: dict[str, Any] = {}
        for key, text in query.items():
            if key in skip:
                continue
            if not isinstance(text, str):
                raise ValidationError(f"{key}={text!r} must be text (a URL query value)")
            args[key] = _parse_value(key, text)
        return cls(**args)

    def to_query(self) -> dict[str, str]:
        """The settings that differ from the defaults, as text (``kind`` always);
        :meth:`from_query` gives this spec back."""
        out = {"kind": self.kind}
        for key in self.QUERY_KEYS[1:]:
            value = getattr(self, key)
            default = _DEFAULTS[key]
            if value == default and type(value) is type(default):
                continue
            if value is None:
                out[key] = "none"
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            else:
                out[key] = str(value)
        return out

    def fields(self) -> list[str]:
        """The fields the chart reads (x, y, group; each once, in that order):
        the ``columns`` to load."""
        return list(dict.fromkeys(f for f in (self.x, self.y, self.group) if f is not None))


#: the default of each setting (what :meth:`PlotSpec.to_query` leaves out)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PlotSpec)}


def _parse_value(key: str, text: str) -> Any:
    if key in ("x", "y", "group", "band"):
        return None if text.strip().lower() in ("", "none") else text
    if key == "over_seeds":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValidationError(f"over_seeds={text!r} must be true or false")
    if key in ("bins", "max_points"):
        try:
            return int(text.strip())
        except ValueError:
            bounds = BINS_RANGE if key == "bins" else MAX_POINTS_RANGE
            raise ValidationError(
                f"{key}={text!r} must be an integer from {bounds[0]} to {bounds[1]}") from None
    return text  # kind: checked by the constructor
