"""Helpers of the analysis tests: records and a tiny in-memory store (no working directory)."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, ClassVar

from metalab._errors import CorruptRecordError, NotFoundError
from metalab.model import ArtifactDescriptor, ErrorInfo, RunRecord, Status
from metalab.store import Store, StoreConfig

T0 = datetime(2025, 1, 1, tzinfo=UTC)
EXP = "my_exp:1.0"


def make_record(
    run_id: str,
    *,
    experiment_id: str = EXP,
    status: Status | str = Status.SUCCESS,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
    minute: int | None = 0,
    **extra: Any,
) -> RunRecord:
    started = None if minute is None else T0 + timedelta(minutes=minute)
    status = Status(status)
    return RunRecord(
        run_id=run_id,
        experiment_id=experiment_id,
        status=status,
        params=params or {},
        metrics=metrics or {},
        tags=tags,
        seed={"root_seed": 7, "replicate_index": 0},
        started_at=started,
        finished_at=None if started is None else started + timedelta(seconds=2),
        duration_ms=None if started is None else 2000.0,
        error=ErrorInfo("ValueError", "boom") if status is Status.FAILED else None,
        **extra,
    )


# --------------------------------------------------------------- memory store
MEMORY: dict[str, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MemoryConfig(StoreConfig):
    scheme: ClassVar[str] = "analysis-memory"
    name: str

    def connect(self) -> MemoryStore:
        return MemoryStore(self)

    @classmethod
    def from_locator(cls, info: Any, **kwargs: Any) -> MemoryConfig:
        return cls(name=info.host or "default", **kwargs)


class MemoryStore(Store):
    """A tiny in-memory store without a working directory (for the non-file paths)."""

    def __init__(self, config: MemoryConfig) -> None:
        self._config = config
        self.data = MEMORY.setdefault(config.name, {})
        self.derived_reads = 0

    @property
    def config(self) -> MemoryConfig:
        return self._config

    def _items(self, kind: str) -> dict[Any, Any]:
        return self.data.setdefault(kind, {})  # type: ignore[no-any-return]

    def put_run_record(self, record: RunRecord, *, durable: bool = True) -> None:
        self._items("runs")[record.run_id] = record.to_dict()

    def get_run_record(self, run_id: str) -> RunRecord | None:
        doc = self._items("runs").get(run_id)
        return None if doc is None else RunRecord.from_dict(doc)

    def iter_run_documents(
        self, experiment_id: str | None = None, *, on_error: Any = None
    ) -> Iterator[dict[str, Any]]:
        want = self.experiment_id or experiment_id
        for doc in list(self._items("runs").values()):
            if isinstance(doc, dict) and (want is None or doc.get("experiment_id") == want):
                yield doc
            elif not isinstance(doc, dict) and on_error is not None:
                on_error(CorruptRecordError("not a record", "mem"))

    def delete_run(self, run_id: str) -> None:
        self._items("runs").pop(run_id, None)

    def put_artifact(
        self, run_id: str, name: str, source: Any, *, kind: str, format: str,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactDescriptor:
        data = bytes(source)
        desc = ArtifactDescriptor(name, kind, format, f"artifacts/{run_id}/{name}", "", len(data))
        self._items("artifacts")[(run_id, name)] = (desc, data)
        return desc

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        return [d for (r, _), (d, _) in self._items("artifacts").items() if r == run_id]

    def open_artifact(self, run_id: str, name: str) -> BinaryIO:
        found = self._items("artifacts").get((run_id, name))
        if found is None:
            raise NotFoundError(f"no artifact {name}")
        return io.BytesIO(found[1])

    def append_log(self, run_id: str, name: str, text: str) -> None:
        logs = self._items("logs")
        logs[(run_id, name)] = logs.get((run_id, name), "") + text

    def get_log(self, run_id: str, name: str = "run") -> str | None:
        return self._items("logs").get((run_id, name))  # type: ignore[no-any-return]

    def list_logs(self, run_id: str) -> list[str]:
        return [n for (r, n) in self._items("logs") if r == run_id]

    def put_data(self, run_id: str, name: str, payload: dict[str, Any]) -> None:
        self._items("data")[(run_id, name)] = dict(payload)

    def get_data(self, run_id: str, name: str) -> dict[str, Any] | None:
        return self._items("data").get((run_id, name))  # type: ignore[no-any-return]

    def list_data(self, run_id: str) -> list[str]:
        return [n for (r, n) in self._items("data") if r == run_id]

    def put_derived(self, run_id: str, values: dict[str, Any]) -> None:
        self._items("derived")[run_id] = dict(values)

    def get_derived(self, run_id: str) -> dict[str, Any] | None:
        self.derived_reads += 1
        return self._items("derived").get(run_id)  # type: ignore[no-any-return]

    def put_experiment_manifest(self, experiment_id: str, manifest: Any, timestamp: Any = None) -> None:
        pass

    def list_experiment_manifests(self, experiment_id: str) -> list[Any]:
        return []

    def list_experiments(self) -> list[str]:
        return sorted({d["experiment_id"] for d in self._items("runs").values()})
