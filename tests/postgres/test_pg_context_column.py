"""The context_fingerprint column from the PostgreSQL index equals the file load's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metalab import load_results
from metalab.definition import Experiment, grid, seeds
from metalab.execution import run
from metalab.store import FileStoreConfig


def square(params: dict[str, Any], capture: Any) -> None:
    capture.metric("y", params["x"] ** 2)


def test_two_contexts_give_the_same_frame_from_the_index_and_the_files(
    make_store: Any, file_root: Path, tmp_path: Path
) -> None:
    pg = make_store("exp:1")
    fingerprints = []
    for data in ("v1", "v2"):
        exp = Experiment(name="exp", version="1",
                         context={"root": str(tmp_path), "data": data},
                         operation=square, params=grid(x=[1, 2]), seeds=seeds(0, 2))
        run(exp, store=pg)
        fingerprints.append(exp.context_fingerprint)
    pg.flush()
    assert not pg.index_is_behind()
    from_index = load_results(pg)
    from_files = load_results(FileStoreConfig(root=str(file_root), experiment_id="exp:1"))
    assert from_index._cols is not None  # the columnar path answered
    a, b = from_index.to_dataframe(), from_files.to_dataframe()
    pd.testing.assert_frame_equal(a, b)
    assert a["context_fingerprint"].value_counts().to_dict() == {
        fingerprints[0]: 4, fingerprints[1]: 4}
