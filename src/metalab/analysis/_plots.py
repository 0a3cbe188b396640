"""Charts of runs: :class:`PlotSpec` and the figures the UI and notebooks show.

A :class:`PlotSpec` says what to draw (kind, x, y, group, aggregation over
seed replicates); it round-trips through a URL query string
(:meth:`PlotSpec.from_query`, :meth:`PlotSpec.to_query`).
:func:`plot_figure` turns a :class:`~metalab.analysis.Results` and a spec
into a plotly figure as a JSON-able dict, aggregated here (means and bands,
histogram bins, sampled scatters), so a browser never receives more than
``max_points`` points.  :func:`replicate_table` collapses seed replicates to
one row per parameter case; :func:`series_figure` draws metric series
downsampled.  :func:`plotly_js_path` is the plotly.js shipped in the plotly
wheel (no network).

numpy, pandas and plotly are imported only when a function needs them
(extra ``ui``).  Pure functions over a Results that is already loaded;
thread-safe.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import MetalabError, ValidationError
from metalab.analysis._deps import require
from metalab.analysis._plots_spec import KINDS, PlotSpec, check_field
from metalab.analysis._plots_stats import BANDS

if TYPE_CHECKING:
    from metalab.analysis._tables import ResultsView

__all__ = ["KINDS", "PlotSpec", "plot_figure", "plotly_js_path", "replicate_table",
           "series_figure"]

# ------------------------------------------------------------------ figures
def plot_figure(results: ResultsView, spec: PlotSpec) -> dict[str, Any]:
    """The chart ``spec`` of ``results`` as a plotly figure dict (``data`` + ``layout``).

    Aggregated here: means with bands per ``x`` value and group
    (``over_seeds``), histogram bins, a fixed-seed sample of scatters larger
    than ``max_points`` (WebGL traces past a thousand points).  Runs left
    out (no value, a non-number, inf or NaN) are counted in an annotation and
    in ``layout.meta.metalab.excluded``; they never count as zero.  Every
    number in the dict is a finite float or ``None`` (plain JSON).

    Raises:
        ValidationError: a field no run has, a non-numeric y, too many groups.
        MissingDependencyError: numpy or pandas is missing (extra ``ui``).
    """
    from metalab.analysis._plots_figure import build_figure

    return build_figure(results, spec)


def replicate_table(results: ResultsView, values: Sequence[str],
                    band: str | None = "ci95") -> dict[str, Any]:
    """Seed replicates collapsed to one row per parameter case (every param).

    ``{"columns": [...], "rows": [[...], ...]}``: a column per param
    (``params.<name>``), ``n`` (runs in the case), then per value field
    ``<field>.mean``, ``<field>.<band>`` (the band's half-width) and
    ``<field>.n`` (the finite values the statistics used: inf and NaN are
    left out, never counted as zero).  Rows are ordered by the param values;
    a statistic that cannot be computed is ``None``.

    Raises:
        ValidationError: an unknown band, a bad field name, a field no run has.
        MissingDependencyError: numpy or pandas is missing (extra ``ui``).
    """
    from metalab.analysis._plots_tables import build_replicate_table

    if band is not None and band not in BANDS:
        raise ValidationError(f"band={band!r} is not a band; use one of "
                              + ", ".join(BANDS) + " or None")
    fields = [check_field("values", v) for v in values]
    return build_replicate_table(results, [f for f in fields if f is not None], band)


def series_figure(series: Mapping[str, Sequence[tuple[int, float]]],
                  max_points: int = 5000, title: str | None = None, *,
                  y_title: str | None = None) -> dict[str, Any]:
    """Line chart of metric series, one trace per key (e.g. per run), as a figure dict.

    The y axis is titled ``y_title``, else the series' name when there is one
    series, else ``value``.

    Each series longer than ``max_points`` is downsampled here to its first
    and last point plus the lowest and highest point of each bucket of
    consecutive steps (so spikes and the extremes stay visible).  NaN and
    infinite values are not drawn and are counted in an annotation.

    Raises:
        ValidationError: ``max_points`` below 4.
        MissingDependencyError: numpy is missing (extra ``ui``).
    """
    from metalab.analysis._plots_tables import build_series_figure

    return build_series_figure(series, max_points, title, y_title)


def plotly_js_path() -> pathlib.Path:
    """The ``plotly.min.js`` inside the installed plotly package (served locally, no CDN).

    Raises:
        MissingDependencyError: plotly is not installed (``pip install 'metalab[ui]'``).
        MetalabError: the installed plotly has no bundled plotly.min.js.
    """
    plotly = require("plotly", "ui", "charts")
    path = pathlib.Path(plotly.__file__ or "").parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise MetalabError(
            f"the installed plotly {getattr(plotly, '__version__', '?')} has no bundled "
            f"plotly.min.js at {path}; reinstall it with pip install --force-reinstall "
            "'metalab[ui]'")
    return path


def figure_object(figure: dict[str, Any]) -> Any:
    """A ``plotly.graph_objects.Figure`` of a figure dict (renders in Jupyter).

    Raises:
        MissingDependencyError: plotly is not installed (extra ``ui``).
    """
    require("plotly", "ui", "Results.plot()")
    import plotly.graph_objects as go

    return go.Figure(figure)
