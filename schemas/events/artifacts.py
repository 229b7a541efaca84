"""Artifacts (resources): bytes kept in a content-addressed store, described by an event."""

from __future__ import annotations

from enum import StrEnum

from deardiary.schemas.events.base import Event


class ArtifactBackend(StrEnum):
    INLINE = "inline"
    FILESYSTEM = "filesystem"
    S3 = "s3"


class ArtifactStored(Event, frozen=True, kw_only=True, tag="artifact_stored"):
    """A second store under the same artifact id updates it (new bytes, same name)."""

    artifact_id: str
    experiment_id: str
    iteration_id: str | None = None
    name: str
    description: str = ""
    backend: ArtifactBackend = ArtifactBackend.FILESYSTEM
    uri: str
    size_bytes: int
    content_hash: str
    media_type: str = "application/octet-stream"
