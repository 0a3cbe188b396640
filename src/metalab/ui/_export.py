"""The current runs view as a download (CSV, Parquet) or as code that reproduces it.

"Copy as Python" is the :func:`metalab.load_results` call and "copy as CLI"
the ``metalab runs ls`` command that give the same runs; both name the
store by its locator with any password removed.  Pure functions except
:func:`parquet_bytes` (a temporary file); thread-safe.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import tempfile
from collections.abc import Sequence
from typing import Any

from metalab._internal import _json
from metalab._internal._redact import redact

__all__ = ["cli_snippet", "csv_bytes", "parquet_bytes", "python_snippet"]


#: first characters that make a spreadsheet read a cell as a formula (CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell; a text that a spreadsheet would run as a formula gets a leading ``'``
    (numbers are written as they are, so ``-1.5`` stays a number)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    if isinstance(value, bool | int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return _json.dumps(value).decode()


def csv_bytes(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    """UTF-8 CSV of ``rows`` with the columns ``header`` (lists and objects as JSON;
    a text starting with ``= + - @``, a tab or a carriage return behind a ``'``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # (RFC 4180: a \r in a text is quoted)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(h)) for h in header])
    return buf.getvalue().encode("utf-8")


def parquet_bytes(results: Any) -> bytes:
    """A Parquet file of ``results`` (a :class:`~metalab.Results`), as bytes.

    Raises:
        MissingDependencyError: pyarrow is not installed.
    """
    with tempfile.TemporaryDirectory(prefix="metalab-ui-") as folder:
        path = os.path.join(folder, "runs.parquet")
        results.to_parquet(path)
        with open(path, "rb") as fh:
            return fh.read()


def python_snippet(locator: str, experiment_id: str, where: str, columns: Sequence[str],
                   sort: Sequence[str]) -> str:
    """The ``load_results`` call that reproduces the view."""
    args = [repr(redact(locator, remove=True)), f"experiment_id={experiment_id!r}"]
    if where.strip():
        args.append(f"where={where!r}")
    if columns:
        args.append(f"columns={list(columns)!r}")
    if sort:
        args.append(f"order_by={list(sort)!r}")
    body = ",\n    ".join(args)
    return f"import metalab\n\nresults = metalab.load_results(\n    {body},\n)\n"


def cli_snippet(locator: str, experiment_id: str, where: str, columns: Sequence[str],
                sort: Sequence[str]) -> str:
    """The ``metalab runs ls`` command that lists the same runs."""
    parts = ["metalab", "runs", "ls", "--store", redact(locator, remove=True),
             "--experiment", experiment_id]
    if where.strip():
        parts += ["--where", where]
    if columns:
        parts += ["--columns", ",".join(columns)]
    if sort:
        parts += ["--sort", ",".join(sort)]
    return " ".join(shlex.quote(p) for p in parts)
