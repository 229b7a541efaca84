"""Projects and experiments: the named containers of iterations."""

from __future__ import annotations

from enum import StrEnum

from deardiary.schemas.events.base import Event


class ProjectCreated(Event, frozen=True, kw_only=True, tag="project_created"):
    """Idempotent: the id is derived from the name, a second creation is a no-op."""

    project_id: str
    name: str
    description: str = ""


class ExperimentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class ExperimentCreated(Event, frozen=True, kw_only=True, tag="experiment_created"):
    """Idempotent: the id is derived from the project id and the name."""

    experiment_id: str
    project_id: str
    name: str
    description: str = ""


class ExperimentStatusChanged(Event, frozen=True, kw_only=True, tag="experiment_status_changed"):
    experiment_id: str
    status: ExperimentStatus
