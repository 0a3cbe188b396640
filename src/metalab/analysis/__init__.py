"""Reading and analysing results.

:func:`load_results` reads the runs of a store into :class:`Results`, an
immutable collection of :class:`Run` views with filtering, tables and
DataFrames; derived metrics are computed after the fact with
:meth:`Results.compute_derived`; charts (:class:`PlotSpec`, :func:`plot_figure`,
:meth:`Results.plot`, :func:`plot_runs`) need the ``ui`` extra.  pandas, numpy and rich are imported only by
the methods that need them.
"""

from metalab.analysis._derived import (
    DerivedFn,
    compute_derived_for_run,
    resolve_derived,
)
from metalab.analysis._experiment_info import ExperimentInfo
from metalab.analysis._frames import set_column_names
from metalab.analysis._load import load_results
from metalab.analysis._plots import (
    PlotSpec,
    plot_figure,
    plotly_js_path,
    replicate_table,
    series_figure,
)
from metalab.analysis._plots_pushdown import plot_runs
from metalab.analysis._results import Results
from metalab.analysis._run import Run

__all__ = [
    "DerivedFn",
    "ExperimentInfo",
    "PlotSpec",
    "Results",
    "Run",
    "compute_derived_for_run",
    "load_results",
    "plot_figure",
    "plot_runs",
    "plotly_js_path",
    "replicate_table",
    "resolve_derived",
    "series_figure",
    "set_column_names",
]
