"""Column naming of tables, and the tabular views the original metalab offered.

Column names
------------
A table column of a parameter is named like the query field: ``params.lr``;
a derived metric ``derived.acc``; a metric keeps its own name (``score``),
or ``metrics.score`` when that name is already a record column.  The
original metalab named them ``param_lr``, ``derived_acc`` and ``metric_score``:
``names="original"`` (a keyword of :meth:`Results.to_dataframe
<metalab.analysis.Results.to_dataframe>`, :meth:`~metalab.analysis.Results.table`,
:meth:`~metalab.analysis.Results.aggregate`) or, process-wide, one line
``metalab.set_column_names("original")`` or the environment variable
``METALAB_COLUMN_NAMES=original`` gives those names back.

:func:`set_column_names` changes a process-wide setting: call it once at the
start of a script, not while other threads build tables.

Views
-----
:func:`table` and :func:`table_rows` (``Results.table``), :func:`summarize`,
:func:`display` and :func:`reduce_artifacts` (the ``artifact_reducers`` of
``to_dataframe``) build on the run documents a :class:`Results` holds.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from metalab._errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from metalab.analysis._run import Run

__all__ = [
    "COLUMN_NAMES_ENV",
    "STYLES",
    "Naming",
    "add_computed_columns",
    "column_names",
    "csv_target",
    "display",
    "naming",
    "reduce_artifacts",
    "render_text",
    "set_column_names",
    "summarize",
    "table",
    "table_rows",
    "tracked",
]

log = logging.getLogger("metalab.analysis")
T = TypeVar("T")

#: environment variable read when no style was set in the process
COLUMN_NAMES_ENV = "METALAB_COLUMN_NAMES"
#: ``"fields"``: ``params.lr`` (the query field names); ``"original"``: ``param_lr``
STYLES = ("fields", "original")
_DEFAULT_STYLE = "fields"
_style: str | None = None


@dataclass(frozen=True, slots=True)
class Naming:
    """The column prefixes of one style."""

    style: str
    params: str
    derived: str
    metric_clash: str

    def param(self, name: str) -> str:
        return f"{self.params}{name}"

    def derived_column(self, name: str) -> str:
        return f"{self.derived}{name}"


_NAMINGS = {
    "fields": Naming("fields", "params.", "derived.", "metrics."),
    "original": Naming("original", "param_", "derived_", "metric_"),
}


def _check_style(style: object, where: str) -> str:
    if style not in STYLES:
        raise ValidationError(
            f"{where}: unknown column naming {style!r}; use 'fields' (params.lr) or "
            "'original' (param_lr, as the original metalab named them)"
        )
    return str(style)


def set_column_names(style: str) -> None:
    """Name table columns ``"fields"`` (``params.lr``, the default) or ``"original"`` (``param_lr``).

    Process-wide; a ``names=`` keyword given to a table method wins.

    Raises:
        ValidationError: an unknown style.
    """
    global _style
    _style = _check_style(style, "set_column_names()")


def column_names(names: str | None = None) -> str:
    """The style in force: ``names`` if given, else :func:`set_column_names`, else the
    environment variable ``METALAB_COLUMN_NAMES``, else ``"fields"``.

    Raises:
        ValidationError: an unknown style (also one read from the environment).
    """
    if names is not None:
        return _check_style(names, "names=")
    if _style is not None:
        return _style
    env = os.environ.get(COLUMN_NAMES_ENV)
    if env:
        return _check_style(env.strip().lower(), f"environment variable {COLUMN_NAMES_ENV}")
    return _DEFAULT_STYLE


def naming(names: str | None = None) -> Naming:
    """The :class:`Naming` of :func:`column_names` ``(names)``."""
    return _NAMINGS[column_names(names)]


# ------------------------------------------------------------------ rows

#: character width of the text ``Results.table()`` renders
_TABLE_WIDTH = 200
#: runs shown by ``Results.table()`` without ``n``
_DEFAULT_TEXT_ROWS = 20
#: format of the time stamp ``Results.to_csv`` puts in file names
_CSV_STAMP = "%Y%m%d_%H%M%S"


def csv_target(path: str | os.PathLike[str], timestamp: bool) -> str:
    """Where ``Results.to_csv(path)`` writes: ``results_<stamp>.csv`` inside a folder
    (an existing one, or a path ending in a separator), ``<stem>_<stamp><suffix>`` with
    ``timestamp``, else ``path`` itself (a file name without suffix stays a file)."""
    p = Path(path)
    stamp = datetime.now().strftime(_CSV_STAMP)
    if p.is_dir() or os.fspath(path).endswith(("/", os.sep)):
        return str(p / f"results_{stamp}.csv")
    if timestamp:
        return str(p.with_name(f"{p.stem}_{stamp}{p.suffix}"))
    return os.fspath(path)


def tracked(items: Iterable[T], total: int, description: str, progress: bool) -> Iterable[T]:
    """``items``, with a progress bar on stderr when ``progress`` and rich is installed."""
    if not progress:
        return items
    try:
        from rich.console import Console
        from rich.progress import track
    except ImportError:
        log.info("progress=True needs rich (pip install rich); continuing without a bar")
        return items
    return track(items, total=total, description=description, transient=True,
                 console=Console(stderr=True))


def render_text(headers: list[str], cells: list[list[str]], title: str, footer: str) -> str:
    """A plain-text table (rich's rendering when rich is installed, aligned columns otherwise)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        if footer:
            lines.append(f"... {footer}")
        return "\n".join(line.rstrip() for line in lines)
    table = Table(title=title, caption=footer or None)
    for h in headers:
        table.add_column(h, overflow="fold")
    for r in cells:
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=_TABLE_WIDTH, color_system=None, force_terminal=False).print(table)
    return buf.getvalue().rstrip("\n")



def _joined_tags(tags: Any) -> str:
    return ",".join(str(t) for t in tags) if isinstance(tags, list | tuple) else ""


def table(results: Any, n: int | bool | None, as_dataframe: bool | None, names: str | None) -> Any:
    """``Results.table``: text for ``table()`` / ``table(n)``, else :func:`table_rows`
    (a DataFrame of them with ``as_dataframe=True``; ``table(True)`` is the original's
    positional ``as_dataframe``)."""
    if isinstance(n, bool):
        n, as_dataframe = None, n
    if as_dataframe is None:
        return results._text(_DEFAULT_TEXT_ROWS if n is None else n, names)
    if n is not None:
        raise ValidationError("table(n, as_dataframe=...): give n (text) or as_dataframe (rows)")
    found = table_rows(results._docs, names)
    if not as_dataframe:
        return found
    from metalab.analysis._deps import require

    return require("pandas", "pandas", "Results.table(as_dataframe=True)").DataFrame(found)


def table_rows(docs: Iterable[Mapping[str, Any]], names: str | None = None) -> list[dict[str, Any]]:
    """One plain dict per run: record fields, params, metrics and tags (joined by ``","``).

    Keys: ``run_id``, ``experiment_id``, ``status``, ``duration_ms``,
    ``started_at``, ``finished_at`` (ISO 8601 texts as stored),
    ``context_fingerprint``, ``params_fingerprint``, ``seed_fingerprint``,
    then each parameter (``params.<name>`` or ``param_<name>``), each metric
    under its own name (a clash with a key above becomes ``metrics.<name>``
    / ``metric_<name>``) and ``tags``.
    """
    n = naming(names)
    out = []
    for d in docs:
        row: dict[str, Any] = {
            key: d.get(key) for key in (
                "run_id", "experiment_id", "status", "duration_ms", "started_at", "finished_at",
                "context_fingerprint", "params_fingerprint", "seed_fingerprint",
            )
        }
        for key, value in (d.get("params") or {}).items():
            row[n.param(key)] = value
        for key, value in (d.get("metrics") or {}).items():
            row[key if key not in row and key != "tags" else f"{n.metric_clash}{key}"] = value
        row["tags"] = _joined_tags(d.get("tags"))
        out.append(row)
    return out


# --------------------------------------------------------------- summary


def summarize(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and durations: ``total_runs``, ``by_status`` (status -> count),
    ``avg_duration_ms``, ``min_duration_ms``, ``max_duration_ms``.

    Durations are over the runs that have one (a run still running has none);
    with none at all the three are ``None`` rather than a made-up 0.
    """
    docs = list(docs)
    by_status = Counter(str(d.get("status")) for d in docs)
    durations = [
        float(v) for v in (d.get("duration_ms") for d in docs)
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return {
        "total_runs": len(docs),
        "by_status": dict(sorted(by_status.items())),
        "avg_duration_ms": sum(durations) / len(durations) if durations else None,
        "min_duration_ms": min(durations) if durations else None,
        "max_duration_ms": max(durations) if durations else None,
    }


def _summary_lines(s: dict[str, Any]) -> list[str]:
    lines = ["Results summary", f"  total runs: {s['total_runs']}"]
    lines += [f"  {status}: {count}" for status, count in s["by_status"].items()]
    if s["avg_duration_ms"] is not None:
        lines.append(f"  avg duration: {s['avg_duration_ms']:.1f} ms")
    return lines


def _group_lines(
    docs: list[Mapping[str, Any]], fields: list[tuple[str, str]], labels: list[str]
) -> list[str]:
    groups: dict[tuple[str, ...], Counter[str]] = {}
    for d in docs:
        key = tuple(repr((d.get(ns) or {}).get(name)) for ns, name in fields)
        groups.setdefault(key, Counter())[str(d.get("status"))] += 1
    header = [*labels, "success", "failed", "total"]
    table = [header] + [
        [*key, str(c["success"]), str(c["failed"]), str(sum(c.values()))]
        for key, c in sorted(groups.items())
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def display(
    results: Any, group_by: str | Iterable[str] | None, show_summary: bool, file: TextIO | None
) -> str:
    """``Results.display``: print (to ``file``, default stdout) the summary and a
    success/failed/total count per group of ``group_by`` values; return the text."""
    labels = [] if group_by is None else [group_by] if isinstance(group_by, str) else list(group_by)
    fields = [results._resolve_field(k) for k in labels]
    docs = list(results._docs)
    if any(ns == "derived" for ns, _ in fields):
        derived = results._derived_list()
        docs = [{**d, "derived": derived[i] if derived else {}} for i, d in enumerate(docs)]
    lines: list[str] = []
    if show_summary:
        lines += _summary_lines(summarize(docs))
    if fields and docs:
        lines += ["", f"By {', '.join(labels)}:", *_group_lines(docs, fields, labels)]
    text = "\n".join(lines)
    print(text, file=file if file is not None else sys.stdout)
    return text


# ------------------------------------------------------ artifact reducers

Reducer = Callable[..., Mapping[str, Any]]


def _wants_run(reducer: Reducer) -> bool:
    """True for a reducer ``(artifact, run)``, False for ``(artifact)``."""
    try:
        sig = inspect.signature(reducer)
    except (TypeError, ValueError):
        return False
    required = [
        p for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) >= 2


def reduce_artifacts(
    runs: Iterable[Run], reducers: Mapping[str, Reducer]
) -> list[dict[str, Any]]:
    """For every run, the merged dicts of ``reducer(artifact)`` (or ``reducer(artifact, run)``).

    A run without the artifact gets no values (NaN in the table); a reducer
    that raises or returns something other than a dict is reported with a
    warning on the ``metalab.analysis`` logger naming the run and the
    artifact, and its values are left out.

    Raises:
        ValidationError: ``reducers`` is not a dict of callables.
    """
    if not isinstance(reducers, Mapping) or not all(callable(r) for r in reducers.values()):
        raise ValidationError(
            "artifact_reducers must be a dict {artifact name: function(artifact[, run]) -> dict}"
        )
    plan = [(name, fn, _wants_run(fn)) for name, fn in reducers.items()]
    out: list[dict[str, Any]] = []
    for run in runs:
        row: dict[str, Any] = {}
        for name, fn, wants_run in plan:
            try:
                artifact = run.artifact(name)
            except NotFoundError:
                continue
            try:
                reduced = fn(artifact, run) if wants_run else fn(artifact)
            except Exception as exc:
                log.warning("artifact reducer for %r failed on run %s: %s: %s",
                            name, run.run_id, type(exc).__name__, exc)
                continue
            if not isinstance(reduced, Mapping):
                log.warning("artifact reducer for %r returned %s on run %s; it must return a "
                            "dict of column values; ignoring it",
                            name, type(reduced).__name__, run.run_id)
                continue
            row.update(reduced)
        out.append(row)
    return out


def add_computed_columns(
    df: Any,
    runs: list[Run],
    derived_metrics: Any,
    artifact_reducers: Mapping[str, Reducer] | None,
    n: Naming,
) -> Any:
    """``df`` with columns of derived metrics computed now (not stored) and of
    artifact reducers; a computed derived metric replaces a stored one of that name."""
    import pandas as pd

    from metalab.analysis._derived import compute_derived_for_run, resolve_derived_many

    extra: list[dict[str, Any]] = [{} for _ in runs]
    if derived_metrics is not None:
        fns = [fn for _, fn in resolve_derived_many(derived_metrics)]
        for row, run in zip(extra, runs, strict=True):
            row.update({n.derived_column(k): v for k, v in compute_derived_for_run(run, fns).items()})
    if artifact_reducers:
        for row, reduced in zip(extra, reduce_artifacts(runs, artifact_reducers), strict=True):
            row.update(reduced)
    if not any(extra):
        return df
    added = pd.DataFrame(extra, index=df.index)
    return pd.concat([df.drop(columns=[c for c in added.columns if c in df.columns]), added], axis=1)
