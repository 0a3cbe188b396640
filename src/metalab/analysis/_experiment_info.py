"""``ExperimentInfo``: the experiment-level facts of a run, read from the experiment manifest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = ["ExperimentInfo"]


@dataclasses.dataclass(frozen=True)
class ExperimentInfo:
    """Name, version, description, metadata and tags of an experiment (the original
    metalab's ``run.experiment``).  ``manifest`` is the whole latest manifest, or
    ``None`` when the store has none (then only the id's parts are known)."""

    experiment_id: str
    name: str = ""
    version: str = ""
    description: str = ""
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    manifest: Mapping[str, Any] | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ExperimentInfo:
        return cls(
            experiment_id=str(manifest.get("experiment_id", "")),
            name=str(manifest.get("name") or ""),
            version=str(manifest.get("version") or ""),
            description=str(manifest.get("description") or ""),
            metadata=dict(manifest.get("metadata") or {}),
            tags=tuple(manifest.get("tags") or ()),
            manifest=manifest,
        )

    @classmethod
    def from_experiment_id(cls, experiment_id: str) -> ExperimentInfo:
        name, _, version = experiment_id.partition(":")
        return cls(experiment_id=experiment_id, name=name, version=version)

    @classmethod
    def read(cls, store: Store, experiment_id: str) -> ExperimentInfo:
        """From the latest manifest of ``experiment_id`` in ``store`` (the id's parts if none).

        Raises:
            CorruptRecordError: the stored manifest cannot be parsed (the error names it).
        """
        manifest = store.get_experiment_manifest(experiment_id)
        if manifest is None:
            return cls.from_experiment_id(experiment_id)
        return cls.from_manifest(manifest)
