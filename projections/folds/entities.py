"""Projects, experiments, and the changes every entity kind shares (tags, notes, ...)."""

from __future__ import annotations

from typing import Any

from deardiary.projections.draft import Draft, json_value
from deardiary.projections.folds.access import grant_all
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import (
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    ExperimentCreated,
    ExperimentStatus,
    ExperimentStatusChanged,
    MetadataSet,
    NotesSet,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)
from deardiary.schemas.ids import user_id

TABLE_OF: dict[EntityKind, str] = {
    EntityKind.PROJECT: "projects",
    EntityKind.EXPERIMENT: "experiments",
    EntityKind.ITERATION: "iterations",
    EntityKind.MODEL: "models",
    EntityKind.MODEL_VERSION: "model_versions",
    EntityKind.ARTIFACT: "artifacts",
}

EntityChange = TagsSet | TagsDeleted | NotesSet | DescriptionSet | MetadataSet
AnyEntityEvent = EntityChange | EntityArchived | EntityDeleted | EntityRestored | EntityRenamed


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
    """The first creation in the log's order makes the project and grants its actor every
    permission on it; later ones (other processes, other users racing) change nothing."""
    if draft.get("projects", event.project_id) is not None:
        return
    draft.put(
        "projects",
        base_row(
            draft, project_id=event.project_id, name=event.name, description=event.description
        ),
    )
    if draft.actor:
        grant_all(draft, user_id(draft.actor), event.project_id)


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


def fold_entity_event(draft: Draft, event: AnyEntityEvent) -> None:
    """Tags, notes, description, metadata, name, archive, delete and restore, for the
    kinds each may target (`EntityEvent.targets`: checked before any fold runs)."""
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
        case EntityRestored():
            row["deleted"] = False
        case EntityRenamed():
            row["name"] = event.name
    row["updated_at"] = draft.log_time
    draft.put(table, row)


def _project_lookups(want: Lookups, event: ProjectCreated) -> None:
    want.want("projects", event.project_id)


def _experiment_lookups(want: Lookups, event: ExperimentCreated | ExperimentStatusChanged) -> None:
    want.want("experiments", event.experiment_id)


def _entity_lookups(want: Lookups, event: AnyEntityEvent) -> None:
    want.want(TABLE_OF[event.entity], event.entity_id)


SPECS: Specs = {
    ProjectCreated: FoldSpec(fold_project_created, _project_lookups),
    ExperimentCreated: FoldSpec(fold_experiment_created, _experiment_lookups),
    ExperimentStatusChanged: FoldSpec(fold_experiment_status, _experiment_lookups),
    **{
        kind: FoldSpec(fold_entity_event, _entity_lookups)
        for kind in (
            TagsSet,
            TagsDeleted,
            NotesSet,
            DescriptionSet,
            MetadataSet,
            EntityArchived,
            EntityDeleted,
            EntityRestored,
            EntityRenamed,
        )
    },
}
