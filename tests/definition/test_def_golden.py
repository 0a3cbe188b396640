"""Golden run ids: the bytes, fingerprints and run ids of ``golden_ids.py`` never change.

A failure here means stored runs would get new ids (be rerun instead of
skipped, no longer dedupe).  Do not update a row to make a test pass unless the
change of encoding is deliberate and announced as breaking.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import golden_ids
import pytest

import metalab

HERE = Path(__file__).resolve().parent
# the metalab being tested (also the copy a mutation tool runs), for the subprocesses
SRC = Path(metalab.__file__).resolve().parents[1]


def _sha16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_the_table_covers_every_value_and_nothing_else() -> None:
    labels = [label for label, _ in golden_ids.VALUES + golden_ids.NUMPY_VALUES]
    assert len(labels) == len(set(labels))
    assert set(labels) == set(golden_ids.GOLDEN)


@pytest.mark.parametrize(("label", "make"), golden_ids.VALUES + golden_ids.NUMPY_VALUES,
                         ids=[label for label, _ in golden_ids.VALUES + golden_ids.NUMPY_VALUES])
def test_golden_row(label: str, make: Any) -> None:
    assert golden_ids.compute(make) == golden_ids.GOLDEN[label]


@pytest.mark.parametrize("label", sorted(golden_ids.GOLDEN))
def test_fingerprint_and_run_id_follow_from_the_bytes(label: str) -> None:
    """An oracle independent of the library: the fingerprint is sha256 of the row's
    bytes, and the run id hashes the four identity fields written out by hand."""
    data, fp, run_id = golden_ids.GOLDEN[label]
    assert fp == _sha16(data)
    params_fp = _sha16(b'{"v":' + data + b"}")
    context_fp = _sha16(b"{}")
    seed_fp = _sha16(b'{"replicate_index":0,"root_seed":0}')
    identity = (f'{{"context_fp":"{context_fp}","experiment_id":"golden:1",'
                f'"params_fp":"{params_fp}","seed_fp":"{seed_fp}"}}')
    assert run_id == _sha16(identity.encode("ascii"))


def test_equal_rows_are_the_documented_equalities() -> None:
    """Rows share bytes only where the encoding says so (tuple = list, numpy = Python)."""
    by_bytes: dict[bytes, set[str]] = {}
    for label, (data, _, _) in golden_ids.GOLDEN.items():
        by_bytes.setdefault(data, set()).add(label)
    shared = sorted(sorted(group) for group in by_bytes.values() if len(group) > 1)
    assert shared == [
        ["True", "numpy bool"],
        ["list", "tuple"],
        ["list empty", "numpy empty array"],
    ]
    assert golden_ids.GOLDEN["numpy float64"][0] == b'{"$f":"0.5"}'


_SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
if {with_numpy}:
    import numpy
import golden_ids
from metalab.definition import canonical_bytes
from metalab import CanonicalizationError

rows = golden_ids.compute_all(with_numpy={with_numpy})

class Weird:
    pass

try:
    canonical_bytes(Weird())
    refused = False
except CanonicalizationError:
    refused = True
print(json.dumps({{
    "rows": {{k: [b.hex(), fp, rid] for k, (b, fp, rid) in rows.items()}},
    "numpy_loaded": "numpy" in sys.modules,
    "refused": refused,
    "set_order": list(dict(golden_ids.VALUES)["set strings"]()),
}}))
"""


def _in_subprocess(hash_seed: str, with_numpy: bool) -> dict[str, Any]:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(SRC))
    code = _SCRIPT.format(here=str(HERE), with_numpy=with_numpy)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_ids_are_the_same_in_other_processes_hash_seeds_and_without_numpy() -> None:
    # (computed here too: a mutation tool links a test to the code it runs in its own process)
    assert golden_ids.compute_all(with_numpy=True) == golden_ids.GOLDEN
    orders = set()
    for with_numpy in (False, True):
        for hash_seed in ("0", "1", "4242", "random"):
            got = _in_subprocess(hash_seed, with_numpy)
            assert got["numpy_loaded"] is with_numpy  # metalab never imports numpy itself
            assert got["refused"]
            labels = [label for label, _ in golden_ids.VALUES]
            if with_numpy:
                labels += [label for label, _ in golden_ids.NUMPY_VALUES]
            expected = {label: [golden_ids.GOLDEN[label][0].hex(), *golden_ids.GOLDEN[label][1:]]
                        for label in labels}
            assert got["rows"] == expected, (hash_seed, with_numpy)
            orders.add(tuple(got["set_order"]))
    # the processes really iterated the set of strings in different orders
    assert len(orders) > 1
