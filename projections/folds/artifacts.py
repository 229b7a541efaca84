"""Artifacts: the description of bytes held in a content-addressed store."""

from __future__ import annotations

from deardiary.projections.draft import Draft
from deardiary.projections.folds.entities import base_row
from deardiary.schemas.events import ArtifactStored


def fold_artifact_stored(draft: Draft, event: ArtifactStored) -> None:
    fields = {
        "experiment_id": event.experiment_id,
        "iteration_id": event.iteration_id,
        "name": event.name,
        "description": event.description,
        "backend": event.backend.value,
        "uri": event.uri,
        "size_bytes": event.size_bytes,
        "content_hash": event.content_hash,
        "media_type": event.media_type,
    }
    row = draft.get("artifacts", event.artifact_id)
    if row is None:
        row = base_row(draft, artifact_id=event.artifact_id, **fields)
        del row["notes"], row["metadata"]
    else:
        row.update(fields, updated_at=draft.log_time, deleted=False)
    draft.put("artifacts", row)
