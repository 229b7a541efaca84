"""Projects and experiments: the named containers of iterations."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from deardiary.schemas.events.base import Event, Permission
from deardiary.schemas.limits import Id, Name, Text


class ProjectCreated(Event, frozen=True, kw_only=True, tag="project_created"):
    """Idempotent: the id is derived from the name, a second creation is a no-op.

    The first creation in the log's order makes the project, and its actor (a signed-in
    user) is granted every permission on it by the fold."""

    partition_fields: ClassVar[tuple[str, ...]] = ("project_id",)
    subject_kind: ClassVar[str] = "project"
    subject_field: ClassVar[str] = "project_id"
    parent_kind: ClassVar[str] = "project"
    parent_field: ClassVar[str] = "project_id"

    project_id: Id
    name: Name
    description: Text = ""


class ExperimentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class ExperimentCreated(Event, frozen=True, kw_only=True, tag="experiment_created"):
    """Idempotent: the id is derived from the project id and the name."""

    partition_fields: ClassVar[tuple[str, ...]] = ("experiment_id",)
    subject_kind: ClassVar[str] = "experiment"
    subject_field: ClassVar[str] = "experiment_id"
    parent_kind: ClassVar[str] = "project"
    parent_field: ClassVar[str] = "project_id"

    experiment_id: Id
    project_id: Id
    name: Name
    description: Text = ""


class ExperimentStatusChanged(Event, frozen=True, kw_only=True, tag="experiment_status_changed"):
    partition_fields: ClassVar[tuple[str, ...]] = ("experiment_id",)
    subject_kind: ClassVar[str] = "experiment"
    subject_field: ClassVar[str] = "experiment_id"
    parent_kind: ClassVar[str] = "experiment"
    parent_field: ClassVar[str] = "experiment_id"
    permission: ClassVar[Permission] = Permission.UPDATE

    experiment_id: Id
    status: ExperimentStatus
