"""``metalab runs ls|show``: query the runs of a store."""

from __future__ import annotations

import csv
import io
from typing import Any

import click

from metalab._internal import _json
from metalab.cli._common import MetalabGroup, exact_cell, json_ready, one_run_options, open_store
from metalab.cli._runinfo import find_run, provenance_lines

__all__ = ["runs"]

_DEFAULT_COLUMNS = ("status", "started_at", "duration_ms", "params", "metrics")


@click.group(cls=MetalabGroup)
def runs() -> None:
    """List and inspect the runs of a store (queries run in the store)."""


def _flatten(doc: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": doc.get("run_id")}
    for key, value in doc.items():
        if key in ("params", "metrics", "derived") and isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items()})
        elif key != "run_id":
            row[key] = value
    return row


def _cell(value: Any) -> str:
    """The text of one table cell: floats shortened to 6 digits for the eye (csv and json
    use :func:`~metalab.cli._common.exact_cell` / ``json_ready``)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return _json.dumps(value).decode()


@runs.command("ls")
@click.option("--store", "-s", "locator", required=True, metavar="LOCATOR",
              help="The store: a path, file:// or postgresql:// locator.")
@click.option("--experiment", "-e", "experiment_id", default=None, metavar="ID",
              help="Only this experiment (e.g. 'my_exp:1.0').")
@click.option("--where", "-w", default=None, metavar="QUERY",
              help="Filter, e.g. 'params.lr < 0.01 and metrics.score >= 0.9' (see docs/queries.md).")
@click.option("--columns", "-c", default=None, metavar="FIELDS",
              help="Comma-separated fields to show, e.g. 'params.lr,metrics.score' "
                   "(default: status, started_at, duration_ms, params, metrics).")
@click.option("--sort", "order_by", default=None, metavar="FIELDS",
              help="Comma-separated fields to order by; prefix '-' for descending.")
@click.option("--limit", "-n", type=int, default=None, help="Show at most N runs.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True,
              help="Output format: 'table' rounds numbers for reading; 'csv' and 'json' hold "
                   "them exactly (NaN and infinities as \"NaN\", \"Infinity\", \"-Infinity\").")
def ls_cmd(locator: str, experiment_id: str | None, where: str | None, columns: str | None,
           order_by: str | None, limit: int | None, fmt: str) -> None:
    """List the runs matching a query, with the chosen columns.

    Example: metalab runs ls -s ./experiments -w 'metrics.score > 0.9' --sort -metrics.score -n 10
    """
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else list(
        _DEFAULT_COLUMNS)
    with open_store(locator, experiment_id) as store:
        found = store.query_runs(experiment_id, where, columns=cols, order_by=order_by,
                                 limit=limit)
    rows = [_flatten(d) for d in found]
    if fmt == "json":
        click.echo(_json.dumps_pretty(json_ready(rows)).decode())
        return
    headers: list[str] = []
    for r in rows:
        for k in r:
            if k not in headers:
                headers.append(k)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        for r in rows:
            writer.writerow([exact_cell(r.get(h)) for h in headers])
        click.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        click.echo("no runs match")
        return
    table = [[_cell(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip())
    click.echo(f"({len(rows)} runs)")


def _show_series(store: Any, rec: Any) -> None:
    """The run's metric series: for a running run the steps written so far (live)."""
    live = store.read_live_series(rec.run_id, rec.attempt) if rec.status.value == "running" else {}
    if live:
        click.echo("series (live, steps so far):")
        for name, (steps, values) in sorted(live.items()):
            click.echo(f"  {name}: {len(steps)} steps, last step {steps[-1]} = {_cell(values[-1])}")
    else:
        click.echo("series: " + (", ".join(rec.series) if rec.series else "(none)"))


@runs.command("show")
@one_run_options
@click.option("--log-lines", type=int, default=20, show_default=True,
              help="How many last lines of each log to show.")
def show_cmd(run_id: str, locator: str, experiment_id: str | None, log_lines: int) -> None:
    """Show one run: params, metrics, the error and traceback of a failed run,
    provenance (git commit, package versions), artifacts and its last log lines.

    RUN_ID_OR_PREFIX is a run id or its first characters (enough to name one run).
    """
    from metalab._errors import NotFoundError

    with open_store(locator, experiment_id) as store:
        run_id = find_run(store, run_id, locator)["run_id"]
        rec = store.get_run_record(run_id)
        if rec is None:
            raise NotFoundError(f"run {run_id!r} was deleted from {locator} while being read")
        doc = rec.to_dict()
        click.echo(f"run {rec.run_id}  ({rec.experiment_id})")
        for key in ("status", "started_at", "finished_at", "duration_ms", "attempt"):
            click.echo(f"  {key}: {_cell(doc.get(key))}")
        if rec.tags:
            click.echo(f"  tags: {', '.join(rec.tags)}")
        if rec.notes:
            click.echo(f"  note: {rec.notes}")
        for section in ("params", "metrics"):
            values = doc.get(section) or {}
            click.echo(f"{section}:" + ("" if values else " (none)"))
            for k, v in values.items():
                click.echo(f"  {k} = {_cell(v)}")
        derived = store.get_derived(run_id) or {}
        if derived:
            click.echo("derived:")
            for k, v in derived.items():
                click.echo(f"  {k} = {_cell(v)}")
        if rec.error is not None:
            click.echo(f"error: {rec.error.type}: {rec.error.message}")
            trace = rec.error.traceback.rstrip("\n")
            if trace:
                click.echo("traceback:")
                for line in trace.splitlines():
                    click.echo(f"  | {line}")
        click.echo("provenance:")
        for line in provenance_lines(rec.provenance):
            click.echo(f"  {line}")
        click.echo("artifacts:" + ("" if rec.artifacts else " (none)"))
        for a in rec.artifacts:
            click.echo(f"  {a.name} ({a.kind}, {a.format or '-'}, {a.size_bytes} bytes)")
        _show_series(store, rec)
        for name in store.list_logs(run_id):
            text = store.get_log(run_id, name) or ""
            lines = text.splitlines()[-log_lines:] if log_lines > 0 else []
            click.echo(f"log {name} (last {len(lines)} lines):")
            for line in lines:
                click.echo(f"  | {line}")
