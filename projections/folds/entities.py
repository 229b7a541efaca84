"""Projects, experiments, and the changes every entity kind shares (tags, notes, ...)."""

from __future__ import annotations

from typing import Any

from deardiary.projections.draft import Draft, json_value
from deardiary.schemas.events import (
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    ExperimentCreated,
    ExperimentStatus,
    ExperimentStatusChanged,
    MetadataSet,
    NotesSet,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)

TABLE_OF: dict[EntityKind, str] = {
    EntityKind.PROJECT: "projects",
    EntityKind.EXPERIMENT: "experiments",
    EntityKind.ITERATION: "iterations",
    EntityKind.MODEL: "models",
    EntityKind.MODEL_VERSION: "model_versions",
    EntityKind.ARTIFACT: "artifacts",
}

EntityChange = TagsSet | TagsDeleted | NotesSet | DescriptionSet | MetadataSet
EntityEvent = EntityChange | EntityArchived | EntityDeleted
ENTITY_EVENTS: tuple[type[EntityEvent], ...] = (
    TagsSet,
    TagsDeleted,
    NotesSet,
    DescriptionSet,
    MetadataSet,
    EntityArchived,
    EntityDeleted,
)


def base_row(draft: Draft, **fields: Any) -> dict[str, Any]:
    """The columns every entity row has, stamped with the event's actor and log time."""
    row: dict[str, Any] = {
        "notes": "",
        "tags": {},
        "metadata": {},
        "archived": False,
        "deleted": False,
        "created_by": draft.actor,
        "created_at": draft.log_time,
        "updated_at": draft.log_time,
    }
    row.update(fields)
    return row


def fold_project_created(draft: Draft, event: ProjectCreated) -> None:
    if draft.get("projects", event.project_id) is not None:
        return  # created concurrently by another process: one entity
    draft.put(
        "projects",
        base_row(
            draft, project_id=event.project_id, name=event.name, description=event.description
        ),
    )


def fold_experiment_created(draft: Draft, event: ExperimentCreated) -> None:
    if draft.get("experiments", event.experiment_id) is not None:
        return
    draft.put(
        "experiments",
        base_row(
            draft,
            experiment_id=event.experiment_id,
            project_id=event.project_id,
            name=event.name,
            description=event.description,
            status=ExperimentStatus.ACTIVE.value,
            end_date=None,
        ),
    )


def fold_experiment_status(draft: Draft, event: ExperimentStatusChanged) -> None:
    row = draft.existing("experiments", event.experiment_id, "experiment")
    if row is None:
        return
    row["status"] = event.status.value
    row["end_date"] = None if event.status is ExperimentStatus.ACTIVE else draft.log_time
    row["updated_at"] = draft.log_time
    draft.put("experiments", row)


def fold_entity_event(draft: Draft, event: EntityEvent) -> None:
    """Tags, notes, description, metadata, archive and delete, for any entity kind."""
    table = TABLE_OF[event.entity]
    row = draft.existing(table, event.entity_id, str(event.entity))
    if row is None:
        return
    match event:
        case TagsSet():
            row["tags"] = {**row["tags"], **event.tags}
        case TagsDeleted():
            row["tags"] = {k: v for k, v in row["tags"].items() if k not in set(event.keys)}
        case NotesSet():
            row["notes"] = event.notes
        case DescriptionSet():
            row["description"] = event.description
        case MetadataSet():
            row["metadata"] = {**row["metadata"], **json_value(event.metadata)}
        case EntityArchived():
            row["archived"] = event.archived
        case EntityDeleted():
            row["deleted"] = True
    row["updated_at"] = draft.log_time
    draft.put(table, row)
