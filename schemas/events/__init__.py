"""The whole event vocabulary in one tagged union, and each event's partition key.

Events of one iteration (or one model) share a partition key, so they stay in
order in one partition of the log. What each type declares about itself (partition
key, subject, parent, permission, `problem()`) is in `base.py`.
"""

from __future__ import annotations

from deardiary.schemas.events.access import (
    AccessTokenCreated,
    AccessTokenRevoked,
    PermissionGranted,
    PermissionRevoked,
    UserAdminSet,
    UserCreated,
    UserPasswordChanged,
)
from deardiary.schemas.events.artifacts import ArtifactBackend, ArtifactStored
from deardiary.schemas.events.base import EntityKind, Permission
from deardiary.schemas.events.checkpoints import (
    CheckpointDiscarded,
    CheckpointFile,
    CheckpointSaved,
)
from deardiary.schemas.events.entities import (
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityRenamed,
    EntityRestored,
    MetadataSet,
    NotesSet,
    TagsDeleted,
    TagsSet,
)
from deardiary.schemas.events.iterations import (
    Environment,
    EnvironmentCaptured,
    IterationEnded,
    IterationHeartbeat,
    IterationMoved,
    IterationStarted,
    IterationStatus,
)
from deardiary.schemas.events.logs import LogLinesLogged
from deardiary.schemas.events.media import HistogramLogged, MediaKind, MediaLogged
from deardiary.schemas.events.metrics import AUTO_STEP, MetricsLogged
from deardiary.schemas.events.params import ParamsLogged
from deardiary.schemas.events.projects import (
    ExperimentCreated,
    ExperimentStatus,
    ExperimentStatusChanged,
    ProjectCreated,
)
from deardiary.schemas.events.registry import (
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
)
from deardiary.schemas.events.usage import ModelVersionUsed

Event = (
    ProjectCreated
    | ExperimentCreated
    | ExperimentStatusChanged
    | IterationStarted
    | IterationHeartbeat
    | IterationEnded
    | EnvironmentCaptured
    | ParamsLogged
    | MetricsLogged
    | LogLinesLogged
    | ArtifactStored
    | ModelCreated
    | ModelVersionCreated
    | ModelVersionStaged
    | ModelAliasSet
    | TagsSet
    | TagsDeleted
    | NotesSet
    | DescriptionSet
    | MetadataSet
    | EntityArchived
    | EntityDeleted
    | EntityRestored
    | EntityRenamed
    | IterationMoved
    | MediaLogged
    | HistogramLogged
    | CheckpointSaved
    | CheckpointDiscarded
    | ModelVersionUsed
    | UserCreated
    | UserPasswordChanged
    | UserAdminSet
    | PermissionGranted
    | PermissionRevoked
    | AccessTokenCreated
    | AccessTokenRevoked
)

EVENT_TYPES: tuple[type[Event], ...] = Event.__args__


def event_tag(event: Event) -> str:
    """The persisted type id of an event."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def partition_key(event: Event) -> str:
    """The key that keeps related events in order in one log partition."""
    return event.partition_key()


__all__ = [
    "AUTO_STEP",
    "EVENT_TYPES",
    "AccessTokenCreated",
    "AccessTokenRevoked",
    "ArtifactBackend",
    "ArtifactStored",
    "CheckpointDiscarded",
    "CheckpointFile",
    "CheckpointSaved",
    "DescriptionSet",
    "EntityArchived",
    "EntityDeleted",
    "EntityKind",
    "EntityRenamed",
    "EntityRestored",
    "Environment",
    "EnvironmentCaptured",
    "Event",
    "ExperimentCreated",
    "ExperimentStatus",
    "ExperimentStatusChanged",
    "HistogramLogged",
    "IterationEnded",
    "IterationHeartbeat",
    "IterationMoved",
    "IterationStarted",
    "IterationStatus",
    "LogLinesLogged",
    "MediaKind",
    "MediaLogged",
    "MetadataSet",
    "MetricsLogged",
    "ModelAliasSet",
    "ModelCreated",
    "ModelStage",
    "ModelVersionCreated",
    "ModelVersionStaged",
    "ModelVersionUsed",
    "NotesSet",
    "ParamsLogged",
    "Permission",
    "PermissionGranted",
    "PermissionRevoked",
    "ProjectCreated",
    "TagsDeleted",
    "TagsSet",
    "UserAdminSet",
    "UserCreated",
    "UserPasswordChanged",
    "event_tag",
    "partition_key",
]
