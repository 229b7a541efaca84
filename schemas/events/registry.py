"""The model registry: models, numbered versions, stages and aliases."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from deardiary.schemas.events.base import Event, Permission
from deardiary.schemas.limits import Id, IdOrEmpty, Key, Metadata, Name, Tags, Text
from deardiary.schemas.rules import key_problem, keys_problem, metadata_problem


class ModelStage(StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class ModelEvent(Event, frozen=True, kw_only=True):
    """Events of one model, kept in order by its id."""

    partition_fields: ClassVar[tuple[str, ...]] = ("model_id",)
    subject_kind: ClassVar[str] = "model"
    subject_field: ClassVar[str] = "model_id"
    parent_kind: ClassVar[str] = "model"
    parent_field: ClassVar[str] = "model_id"


class ModelCreated(ModelEvent, frozen=True, kw_only=True, tag="model_created"):
    """Idempotent: the id is derived from the project id and the name."""

    parent_kind: ClassVar[str] = "project"
    parent_field: ClassVar[str] = "project_id"

    model_id: Id
    project_id: Id
    name: Name
    description: Text = ""
    tags: Tags = {}

    def problem(self) -> str | None:
        return keys_problem(self.tags, "tag")


class ModelVersionCreated(ModelEvent, frozen=True, kw_only=True, tag="model_version_created"):
    """The version number is assigned by the fold (1, 2, 3... per model), never by clients."""

    subject_kind: ClassVar[str] = "model_version"
    subject_field: ClassVar[str] = "model_version_id"

    model_version_id: Id
    model_id: Id
    iteration_id: IdOrEmpty | None = None
    artifact_id: IdOrEmpty | None = None
    description: Text = ""
    tags: Tags = {}
    metadata: Metadata = {}
    """The version's first metadata (the MLflow API keeps its source URI, where the files
    are, its logged model and run link as ``mlflow.*`` keys)."""
    checkpoint_id: IdOrEmpty | None = None
    """The checkpoint (of `iteration_id`) whose files the version is: retention keeps it."""

    def problem(self) -> str | None:
        return keys_problem(self.tags, "tag") or metadata_problem(self.metadata)


class ModelVersionStaged(ModelEvent, frozen=True, kw_only=True, tag="model_version_staged"):
    """archive_existing moves the versions currently in `stage` to Archived."""

    subject_kind: ClassVar[str] = "model_version"
    subject_field: ClassVar[str] = "model_version_id"
    permission: ClassVar[Permission] = Permission.UPDATE

    model_version_id: Id
    model_id: Id
    stage: ModelStage
    archive_existing: bool = False


class ModelAliasSet(ModelEvent, frozen=True, kw_only=True, tag="model_alias_set"):
    """Points an alias at a version; model_version_id=None removes the alias."""

    permission: ClassVar[Permission] = Permission.UPDATE

    model_id: Id
    alias: Key
    model_version_id: IdOrEmpty | None = None

    def problem(self) -> str | None:
        problem = key_problem(self.alias)
        return None if problem is None else f"alias {self.alias[:100]!r} {problem}"
