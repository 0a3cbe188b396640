"""The record model: run records, statuses, artifact descriptors.

A :class:`RunRecord` is the one JSON document stored per run
(``runs/{run_id}.json``).  It holds identity (ids and fingerprints), status and
times, params, scalar metrics, tags, provenance, the error if any, and
descriptors of the artifacts the run saved.  Stepped metric series, structured
data, logs and artifact bytes live in their own files so the record stays small.

Records are plain values: build them, ``to_dict()`` them, ``from_dict()`` them.
``from_dict`` accepts every schema version this code can read and raises
:class:`~metalab.CorruptRecordError` with the reason for anything else.

A metric may be an infinite or NaN float: the document holds the JSON text
``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` in its place (strict JSON; see
:mod:`metalab._internal._json`), and ``from_dict`` reads it back as the float.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from metalab._errors import CorruptRecordError
from metalab._internal._json import decode_values, encode_values
from metalab._internal._time import from_iso, to_iso

__all__ = [
    "RECORD_SCHEMA_VERSION",
    "ArtifactDescriptor",
    "ErrorInfo",
    "Provenance",
    "RunRecord",
    "Status",
]

RECORD_SCHEMA_VERSION = 1


class Status(enum.StrEnum):
    """Lifecycle of a run.

    ``running`` is written when a run starts; exactly one of ``success``,
    ``failed`` or ``cancelled`` replaces it when the run ends.  ``lost`` is never
    written by a worker: readers assign it to a ``running`` record whose
    heartbeat has stopped (the worker died).
    """

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in (Status.SUCCESS, Status.FAILED, Status.CANCELLED)


@dataclass(frozen=True, slots=True)
class ArtifactDescriptor:
    """Where an artifact lives and how to read it back.

    ``uri`` is relative to the experiment folder (``artifacts/{run_id}/{file}``),
    so a store copied elsewhere still finds its artifacts.
    """

    name: str
    kind: str  # "json" | "numpy" | "pickle" | "file" | "text" | ...
    format: str  # file extension without the dot: "json", "npz", "pkl", "png", ...
    uri: str
    content_hash: str  # sha256 hex of the stored bytes
    size_bytes: int
    artifact_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "uri": self.uri,
            "content_hash": self.content_hash,
            "size_bytes": self.size_bytes,
            "artifact_id": self.artifact_id,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactDescriptor:
        return cls(
            name=d["name"],
            kind=d.get("kind", "file"),
            format=d.get("format", ""),
            uri=d.get("uri", ""),
            content_hash=d.get("content_hash", ""),
            size_bytes=int(d.get("size_bytes", 0)),
            artifact_id=d.get("artifact_id", ""),
            metadata=dict(d.get("metadata") or {}),
        )


_ERROR_KEYS = ("type", "message", "traceback")


@dataclass(frozen=True, slots=True)
class ErrorInfo(Mapping[str, str]):
    """Why a run failed: exception type, message and formatted traceback.

    Readable by attribute (``error.message``) and, as in the original
    metalab where it was a dict, as a read-only mapping with the keys
    ``type``, ``message`` and ``traceback`` (``error["message"]``,
    ``error.get("type")``, ``dict(error)``).  An unknown key raises KeyError.
    """

    type: str
    message: str
    traceback: str = ""

    def __getitem__(self, key: str) -> str:
        if key not in _ERROR_KEYS:
            raise KeyError(key)
        value: str = getattr(self, key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_ERROR_KEYS)

    def __len__(self) -> int:
        return len(_ERROR_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorInfo:
        return cls(type=d.get("type", ""), message=d.get("message", ""), traceback=d.get("traceback", ""))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        import traceback as tb

        return cls(
            type=type(exc).__qualname__,
            message=str(exc),
            traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
        )


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where and with what code a run executed (not part of the run's identity).

    ``git``: the state of the operation's repository (``commit``, ``branch``,
    ``dirty``, ``root``, or ``missing`` with the reason) and ``packages``: the
    versions of the distributions the operation's module imports, both
    collected once per launch (see :mod:`metalab.execution._provenance`);
    empty in records written without them.
    """

    code_hash: str = ""
    operation_ref: str = ""
    executor: str = ""
    worker_id: str = ""
    host: str = ""
    pid: int | None = None
    python_version: str = ""
    metalab_version: str = ""
    platform: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code_hash": self.code_hash,
            "operation_ref": self.operation_ref,
            "executor": self.executor,
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "python_version": self.python_version,
            "metalab_version": self.metalab_version,
            "platform": self.platform,
            "extra": dict(self.extra),
            "git": dict(self.git),
            "packages": dict(self.packages),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(
            code_hash=d.get("code_hash", ""),
            operation_ref=d.get("operation_ref", ""),
            executor=d.get("executor", ""),
            worker_id=d.get("worker_id", ""),
            host=d.get("host", ""),
            pid=d.get("pid"),
            python_version=d.get("python_version", ""),
            metalab_version=d.get("metalab_version", ""),
            platform=d.get("platform", ""),
            extra=dict(d.get("extra") or {}),
            git=dict(d.get("git") or {}),
            packages=dict(d.get("packages") or {}),
        )

    @classmethod
    def current(cls, **kw: Any) -> Provenance:
        """Provenance of this process (host, pid, Python and metalab versions)."""
        import os
        import platform
        import socket
        import sys

        from metalab._version import __version__

        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            python_version=sys.version.split()[0],
            metalab_version=__version__,
            platform=platform.platform(terse=True),
            **kw,
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: identity, status, times, inputs, scalar outputs and provenance.

    Attributes:
        run_id: deterministic id (see :func:`metalab.definition.compute_run_id`).
        experiment_id: ``"name:version"``.
        status: see :class:`Status`.
        params: the resolved parameters of the run (JSON values).
        seed: ``{"root_seed": int, "replicate_index": int}``.
        metrics: scalar metrics (stepped series are stored separately; their
            names are listed in ``series``); floats may be infinite or NaN.
        data: names of structured data items the run stored.
        series: names of stepped metric series the run stored.
        heartbeat_at: last sign of life of a ``running`` run.
        attempt: how many times this run has been started (1 for the first).
    """

    run_id: str
    experiment_id: str
    status: Status
    context_fingerprint: str = ""
    params_fingerprint: str = ""
    seed_fingerprint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    duration_ms: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    artifacts: tuple[ArtifactDescriptor, ...] = ()
    error: ErrorInfo | None = None
    provenance: Provenance = field(default_factory=Provenance)
    warnings: tuple[str, ...] = ()
    notes: str = ""
    attempt: int = 1
    schema_version: int = RECORD_SCHEMA_VERSION

    def replace(self, **changes: Any) -> RunRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return replace(self, **changes)

    def artifact(self, name: str) -> ArtifactDescriptor | None:
        for a in self.artifacts:
            if a.name == name:
                return a
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document stored in ``runs/{run_id}.json``."""
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "status": self.status.value,
            "context_fingerprint": self.context_fingerprint,
            "params_fingerprint": self.params_fingerprint,
            "seed_fingerprint": self.seed_fingerprint,
            "params": self.params,
            "seed": self.seed,
            "tags": list(self.tags),
            "started_at": to_iso(self.started_at),
            "finished_at": to_iso(self.finished_at),
            "heartbeat_at": to_iso(self.heartbeat_at),
            "duration_ms": self.duration_ms,
            "metrics": encode_values(self.metrics),
            "data": list(self.data),
            "series": list(self.series),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "error": self.error.to_dict() if self.error else None,
            "provenance": self.provenance.to_dict(),
            "warnings": list(self.warnings),
            "notes": self.notes,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, d: Any, *, source: str | None = None) -> RunRecord:
        """Build a record from its stored JSON document.

        Raises:
            CorruptRecordError: ``d`` is not a run record of a known schema
                version (``source`` names the file in the message).
        """
        where = f" in {source}" if source else ""
        if not isinstance(d, dict):
            raise CorruptRecordError(f"run record{where} is not a JSON object", source)
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > RECORD_SCHEMA_VERSION:
            raise CorruptRecordError(
                f"run record{where} has schema_version {version!r}, newer than this metalab "
                f"understands ({RECORD_SCHEMA_VERSION}); upgrade metalab to read it",
                source,
            )
        try:
            err = d.get("error")
            prov = d.get("provenance")
            return cls(
                run_id=d["run_id"],
                experiment_id=d["experiment_id"],
                status=Status(d["status"]),
                context_fingerprint=d.get("context_fingerprint", ""),
                params_fingerprint=d.get("params_fingerprint", ""),
                seed_fingerprint=d.get("seed_fingerprint", ""),
                params=d.get("params") or {},
                seed=d.get("seed") or {},
                tags=tuple(d.get("tags") or ()),
                started_at=from_iso(d.get("started_at")),
                finished_at=from_iso(d.get("finished_at")),
                heartbeat_at=from_iso(d.get("heartbeat_at")),
                duration_ms=d.get("duration_ms"),
                metrics=decode_values(d.get("metrics") or {}),
                data=tuple(d.get("data") or ()),
                series=tuple(d.get("series") or ()),
                artifacts=tuple(ArtifactDescriptor.from_dict(a) for a in d.get("artifacts") or ()),
                error=ErrorInfo.from_dict(err) if err else None,
                provenance=Provenance.from_dict(prov) if prov else Provenance(),
                warnings=tuple(d.get("warnings") or ()),
                notes=d.get("notes") or "",
                attempt=int(d.get("attempt", 1)),
                schema_version=RECORD_SCHEMA_VERSION,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptRecordError(f"run record{where} is invalid: {exc!r}", source) from exc
