"""The model registry: models, numbered versions, stages and aliases."""

from __future__ import annotations

from enum import StrEnum

from deardiary.schemas.events.base import Event


class ModelStage(StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class ModelCreated(Event, frozen=True, kw_only=True, tag="model_created"):
    """Idempotent: the id is derived from the project id and the name."""

    model_id: str
    project_id: str
    name: str
    description: str = ""
    tags: dict[str, str] = {}


class ModelVersionCreated(Event, frozen=True, kw_only=True, tag="model_version_created"):
    """The version number is assigned by the fold (1, 2, 3... per model), never by clients."""

    model_version_id: str
    model_id: str
    iteration_id: str | None = None
    artifact_id: str | None = None
    description: str = ""
    tags: dict[str, str] = {}


class ModelVersionStaged(Event, frozen=True, kw_only=True, tag="model_version_staged"):
    """archive_existing moves the versions currently in `stage` to Archived."""

    model_version_id: str
    model_id: str
    stage: ModelStage
    archive_existing: bool = False


class ModelAliasSet(Event, frozen=True, kw_only=True, tag="model_alias_set"):
    """Points an alias at a version; model_version_id=None removes the alias."""

    model_id: str
    alias: str
    model_version_id: str | None = None
