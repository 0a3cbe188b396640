"""The record model (no I/O)."""

from metalab.model._record import (
    RECORD_SCHEMA_VERSION,
    ArtifactDescriptor,
    ErrorInfo,
    Provenance,
    RunRecord,
    Status,
)
from metalab.model._serializers import deserialize, serialize

__all__ = [
    "RECORD_SCHEMA_VERSION",
    "ArtifactDescriptor",
    "ErrorInfo",
    "Provenance",
    "RunRecord",
    "Status",
    "deserialize",
    "serialize",
]
