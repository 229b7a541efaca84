"""Artifacts (resources): bytes kept in a content-addressed store, described by an event."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import ClassVar

from deardiary.schemas.events.base import Event
from deardiary.schemas.limits import Id, IdOrEmpty, MediaType, Name, SizeBytes, Text

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactBackend(StrEnum):
    INLINE = "inline"
    FILESYSTEM = "filesystem"
    S3 = "s3"


class ArtifactStored(Event, frozen=True, kw_only=True, tag="artifact_stored"):
    """A second store under the same artifact id updates it (new bytes, same name)."""

    partition_fields: ClassVar[tuple[str, ...]] = ("iteration_id", "experiment_id")
    subject_kind: ClassVar[str] = "artifact"
    subject_field: ClassVar[str] = "artifact_id"
    parent_kind: ClassVar[str] = "experiment"
    parent_field: ClassVar[str] = "experiment_id"

    artifact_id: Id
    experiment_id: Id
    iteration_id: IdOrEmpty | None = None
    name: Name
    description: Text = ""
    backend: ArtifactBackend = ArtifactBackend.FILESYSTEM
    uri: Text
    size_bytes: SizeBytes
    content_hash: Id
    media_type: MediaType = "application/octet-stream"

    def problem(self) -> str | None:
        if not _SHA256.fullmatch(self.content_hash):
            return "content_hash must be 64 lowercase hex digits (sha256)"
        return None
