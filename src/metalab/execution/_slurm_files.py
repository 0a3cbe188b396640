"""The files of a SLURM submission under ``{experiment folder}/.slurm/{submission_id}/``.

``submission.json`` (the submission manifest: the pending run indices as
ranges, the arrays and their job ids, the store config without password),
``experiment.pkl`` (the experiment's definition without the operation) and
``job.sbatch``.  The submitter writes them (:mod:`metalab.execution._slurm`);
array tasks (:mod:`metalab.execution._slurm_task`) and :func:`reconnect
<metalab.execution.reconnect>` read them back.
"""

from __future__ import annotations

import bisect
import os
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metalab._errors import ExecutionError, NotFoundError
from metalab._internal import _json
from metalab._internal._atomic import atomic_write_bytes
from metalab._internal._redact import without_secrets

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = [
    "EXPERIMENT_FILE",
    "SCRIPT_FILE",
    "SUBMISSION_FILE",
    "SUBMISSION_FORMAT",
    "encode_ranges",
    "load_experiment",
    "load_submission",
    "position_to_index",
    "range_starts",
    "sanitize_store_config",
    "submission_dir",
    "write_experiment_file",
]

SUBMISSION_FILE = "submission.json"
SUBMISSION_FORMAT = "metalab-slurm-submission"
EXPERIMENT_FILE = "experiment.pkl"
SCRIPT_FILE = "job.sbatch"
#: pickle protocol of ``experiment.pkl`` (5: out-of-band buffers, Python >= 3.8)
_PICKLE_PROTOCOL = 5


def encode_ranges(indices: Sequence[int]) -> list[list[int]]:
    """Sorted run indices as ``[[start, stop), ...]`` ranges (compact in JSON)."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def position_to_index(ranges: Sequence[Sequence[int]], starts: Sequence[int], position: int) -> int:
    """The run index at ``position`` of the list encoded by ``ranges``.

    ``starts`` are the cumulative counts before each range (see
    :func:`range_starts`).
    """
    k = bisect.bisect_right(starts, position) - 1
    return int(ranges[k][0]) + position - starts[k]


def range_starts(ranges: Sequence[Sequence[int]]) -> list[int]:
    starts, total = [], 0
    for start, stop in ranges:
        starts.append(total)
        total += stop - start
    return starts


def sanitize_store_config(config: dict[str, Any]) -> dict[str, Any]:
    """A store config dict with every password removed (URIs and ``password=`` pairs).

    The rule of :meth:`StoreConfig.to_dict(include_password=False)
    <metalab.store.StoreConfig.to_dict>` for a dict already made.  Workers
    rebuild the store and get the password from their environment
    (``PGPASSWORD``, ``~/.pgpass``).
    """
    return without_secrets(config)


def submission_dir(store: Store, submission_id: str) -> str:
    return os.path.join(store.get_working_directory(), ".slurm", submission_id)


def _experiment_parts(experiment: Any, derived: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "version": experiment.version,
        "context": experiment.context,
        "params": experiment.params,
        "seeds": experiment.seeds,
        "description": experiment.description,
        "tags": tuple(experiment.tags),
        "metadata": dict(experiment.metadata or {}),
        "derived_metrics": derived,
    }



def write_experiment_file(sub_dir: str, experiment: Any, derived_metrics: tuple[Any, ...]) -> None:
    """Pickle the experiment's definition (without the operation) into ``experiment.pkl``."""
    try:
        blob = pickle.dumps(_experiment_parts(experiment, derived_metrics), protocol=_PICKLE_PROTOCOL)
    except Exception as exc:
        raise ExecutionError(
            f"the definition of {experiment.experiment_id!r} cannot be pickled for SLURM "
            f"workers ({type(exc).__name__}: {exc}); use plain data in context and params"
        ) from exc
    atomic_write_bytes(os.path.join(sub_dir, EXPERIMENT_FILE), blob)



def load_submission(path: str) -> dict[str, Any]:
    """Read a submission manifest.

    Raises:
        NotFoundError: the file is missing.  ExecutionError: it is not a
            metalab submission.
    """
    try:
        with open(path, "rb") as fh:
            doc = _json.loads(fh.read())
    except FileNotFoundError as exc:
        raise NotFoundError(f"submission manifest {path} does not exist") from exc
    if not isinstance(doc, dict) or doc.get("format") != SUBMISSION_FORMAT:
        raise ExecutionError(f"{path} is not a metalab SLURM submission manifest")
    return doc



def _placeholder_operation(params: Any) -> None:  # pragma: no cover - never called
    raise ExecutionError("placeholder operation of a rebuilt experiment")


def load_experiment(path: str, doc: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """Rebuild the shipped experiment (with a placeholder operation) and its derived metrics."""
    from metalab.definition import Experiment

    with open(path, "rb") as fh:
        parts = pickle.loads(fh.read())
    derived = tuple(parts.pop("derived_metrics", ()) or ())
    placeholder: Any = _placeholder_operation
    exp = Experiment(operation=placeholder, **parts)
    # trust the submitter's context fingerprint: same run ids, no rehashing on every node
    exp.__dict__["context_fingerprint"] = doc["context_fingerprint"]
    return exp, derived
