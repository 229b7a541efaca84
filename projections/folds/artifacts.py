"""Artifacts: the description of bytes held in a content-addressed store."""

from __future__ import annotations

from deardiary.projections.draft import Draft
from deardiary.projections.folds.entities import base_row
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import ArtifactStored


def _parent(event: ArtifactStored) -> tuple[str, str, str]:
    """The parent in this event's own partition: its iteration if it names one."""
    if event.iteration_id:
        return "iterations", event.iteration_id, "iteration"
    return "experiments", event.experiment_id, "experiment"


def fold_artifact_stored(draft: Draft, event: ArtifactStored) -> None:
    if not draft.parent(*_parent(event)):
        return
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
    else:
        row.update(fields, updated_at=draft.log_time, deleted=False)
    draft.put("artifacts", row)


def _lookups(want: Lookups, event: ArtifactStored) -> None:
    want.want("artifacts", event.artifact_id)
    table, key, _ = _parent(event)
    want.want_exists(table, key)


SPECS: Specs = {ArtifactStored: FoldSpec(fold_artifact_stored, _lookups)}
