"""Copy experiments between stores of any kind (file -> file, postgres -> file, ...).

Works only through the :class:`~metalab.store.Store` interface, so every pair
of backends is supported.  What is copied per experiment: experiment manifests
(with their timestamps), run records, derived metrics, structured data, logs
and artifacts.  Artifacts are stored again by name, so their URIs are those of
the destination, and the copied record points at them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalab._errors import ConfigError, CorruptRecordError, ScopeError
from metalab.model import RunRecord
from metalab.store._base import Store, warn_corrupt
from metalab.store._config import StoreConfig
from metalab.store._factory import make_config, make_store, require_experiment

__all__ = ["TransferReport", "export_store"]

Progress = Callable[[int, int], None]


@dataclass
class TransferReport:
    """What :func:`export_store` copied (counts)."""

    experiments: int = 0
    runs: int = 0
    runs_skipped: int = 0
    derived: int = 0
    data: int = 0
    logs: int = 0
    artifacts: int = 0
    manifests: int = 0


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A record document without the parts that differ per store (artifact ids, uris)."""
    out = dict(doc)
    out["artifacts"] = sorted(
        (
            {k: v for k, v in a.items() if k not in ("artifact_id", "uri")}
            for a in doc.get("artifacts") or ()
        ),
        key=lambda a: str(a.get("name")),
    )
    return out


def export_store(
    source: Store | StoreConfig | str | os.PathLike[str] | None,
    destination: Store | StoreConfig | str | os.PathLike[str] | None,
    *,
    experiment_id: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy one experiment (or every experiment of a collection) to another store.

    Args:
        source, destination: stores, configs, paths or locators, or ``None``
            for the default folder (the rule of
            :func:`~metalab.store.make_store`).  An unscoped destination
            receives each experiment in its own scope.
        experiment_id: copy only this experiment (default: the source's scope,
            or all experiments of an unscoped source).
        overwrite: also copy runs whose destination record is identical.
        progress: called as ``progress(done_runs, total_runs)``.

    Annotations (tags and notes set after the fact, see
    :meth:`~metalab.store.Store.annotate_runs`) are copied with their runs
    and experiments.  The copy is lossless and idempotent: a run whose destination record
    already equals the source's is skipped, any other destination run is
    replaced as a whole (record, derived, data, logs, artifacts), and the
    record is written last so an interrupted copy is finished by the next one.

    Raises:
        NotFoundError: the source folder does not exist, or the source does
            not hold ``experiment_id``.
        ScopeError: a scoped source or destination names another experiment.
        ConfigError: source and destination are the same store, or a
            locator is invalid.
        ValidationError: a source or destination of none of the types above.
    """
    src_cfg = make_config(source, must_exist=True)
    dst_cfg = make_config(destination)
    if src_cfg.unscoped() == dst_cfg.unscoped():
        raise ConfigError("source and destination are the same store; pick another destination")
    experiments = _experiments_to_copy(src_cfg, dst_cfg, experiment_id)

    report = TransferReport()
    opened: list[Store] = []
    try:
        plan: list[tuple[str, Store, Store, list[dict[str, Any]]]] = []
        for eid in experiments:
            src = make_store(src_cfg, experiment_id=eid)
            opened.append(src)
            dst = make_store(dst_cfg, experiment_id=eid)
            opened.append(dst)
            plan.append((eid, src, dst, list(src.iter_run_documents(eid, on_error=warn_corrupt))))
        total = sum(len(docs) for *_, docs in plan)
        done = 0
        for eid, src, dst, docs in plan:
            report.experiments += 1
            existing = dst.list_experiment_manifests(eid)
            for ts, manifest in src.list_experiment_manifests(eid):
                if (ts, manifest) not in existing:
                    dst.put_experiment_manifest(eid, manifest, timestamp=ts)
                    report.manifests += 1
            for doc in docs:
                _copy_run(src, dst, doc, overwrite, report)
                done += 1
                if progress is not None:
                    progress(done, total)
            _copy_experiment_annotations(src, dst, eid)
    finally:
        for store in opened:
            store.close()
    return report


def _experiments_to_copy(src_cfg: StoreConfig, dst_cfg: StoreConfig,
                         experiment_id: str | None) -> list[str]:
    """The experiments :func:`export_store` copies (raises as it documents)."""
    if experiment_id is not None:
        if src_cfg.is_scoped and src_cfg.experiment_id != experiment_id:
            raise ScopeError(
                f"the source is scoped to {src_cfg.experiment_id!r}, not {experiment_id!r}"
            )
        with make_store(src_cfg) as held:
            require_experiment(held, experiment_id)
        experiments = [experiment_id]
    elif src_cfg.experiment_id is not None:
        experiments = [src_cfg.experiment_id]
    else:
        collection = make_store(src_cfg)
        try:
            experiments = list(collection.list_experiments())
        finally:
            collection.close()
    for eid in experiments:
        if dst_cfg.is_scoped and dst_cfg.experiment_id != eid:
            raise ScopeError(
                f"the destination is scoped to {dst_cfg.experiment_id!r} but experiment {eid!r} "
                "is being copied; give an unscoped (collection) destination"
            )
    return experiments


def _copy_run(
    src: Store, dst: Store, doc: dict[str, Any], overwrite: bool, report: TransferReport
) -> None:
    try:
        record = RunRecord.from_dict(doc, source=str(doc.get("run_id", "?")))
    except CorruptRecordError as exc:
        warn_corrupt(exc)
        return
    run_id = record.run_id
    if not overwrite:
        current = dst.get_run_record(run_id)
        if current is not None and _comparable(current.to_dict()) == _comparable(record.to_dict()):
            report.runs_skipped += 1
            return
    dst.delete_run(run_id)  # replace as a whole (also clears a half-finished copy)
    if src.supports_annotations and dst.supports_annotations:
        # the record as executed; its annotations are copied as such after it
        record = src.executed_record(run_id) or record

    derived = src.get_derived(run_id)
    if derived is not None:
        dst.put_derived(run_id, derived)
        report.derived += 1
    for name in src.list_data(run_id):
        payload = src.get_data(run_id, name)
        if payload is not None:
            dst.put_data(run_id, name, payload)
            report.data += 1
    for name in src.list_logs(run_id):
        text = src.get_log(run_id, name)
        if text is not None:
            dst.append_log(run_id, name, text)
            report.logs += 1
    new_descs = {}
    workdir = src.get_working_directory() if src.supports_working_directory else None
    for desc in src.list_artifacts(run_id):
        source: Any
        if workdir is not None:
            source = Path(workdir, desc.uri)
        else:
            source = src.get_artifact_bytes(run_id, desc.name)
        new_descs[desc.name] = dst.put_artifact(
            run_id, desc.name, source, kind=desc.kind, format=desc.format,
            metadata=dict(desc.metadata),
        )
        report.artifacts += 1
    if new_descs:
        record = record.replace(
            artifacts=tuple(new_descs.get(a.name, a) for a in record.artifacts)
        )
    dst.put_run_record(record)
    if src.supports_annotations and dst.supports_annotations:
        ann = src.get_annotations(run_id)
        if ann.tags or ann.removed_tags or ann.note is not None:
            dst.annotate_runs([run_id], add_tags=ann.tags, remove_tags=ann.removed_tags,
                              note=... if ann.note is None else ann.note)
    report.runs += 1


def _copy_experiment_annotations(src: Store, dst: Store, experiment_id: str) -> None:
    """The experiment's tags and note, added to those of the destination (if
    it holds the experiment: it has none of its runs or manifests otherwise)."""
    if not (src.supports_annotations and dst.supports_annotations):
        return
    ann = src.get_experiment_annotations(experiment_id)
    if not (ann.tags or ann.removed_tags or ann.note is not None):
        return
    if experiment_id not in dst.list_experiments():
        return
    dst.annotate_experiment(experiment_id, add_tags=ann.tags, remove_tags=ann.removed_tags,
                            note=... if ann.note is None else ann.note)
