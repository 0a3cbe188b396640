"""The CSV download of the runs view: safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io

from metalab.ui._export import csv_bytes


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted() -> None:
    texts = ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "a=b"]
    rows = [{"params.note": t, "metrics.loss": -1.5, "metrics.n": -3} for t in texts]
    data = csv_bytes(["params.note", "metrics.loss", "metrics.n"], rows)
    read = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))[1:]
    assert [r[0] for r in read] == ["'" + t for t in texts[:6]] + ["plain", "a=b"]
    assert {(r[1], r[2]) for r in read} == {("-1.5", "-3")}  # (numbers stay numbers)
