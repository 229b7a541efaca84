"""The whole event vocabulary in one tagged union (`Event`) and the tuple of its types.

Importing this module creates every event class; the package `deardiary.schemas.events`
loads it only when `Event` or `EVENT_TYPES` is asked for (decoding needs the union, a
process that only writes events does not).
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
from deardiary.schemas.events.artifacts import ArtifactStored
from deardiary.schemas.events.checkpoints import (
    CheckpointDiscarded,
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
    EnvironmentCaptured,
    IterationEnded,
    IterationHeartbeat,
    IterationMoved,
    IterationStarted,
)
from deardiary.schemas.events.logs import LogLinesLogged
from deardiary.schemas.events.media import HistogramLogged, MediaLogged
from deardiary.schemas.events.metrics import MetricsLogged
from deardiary.schemas.events.params import ParamsLogged
from deardiary.schemas.events.projects import (
    ExperimentCreated,
    ExperimentStatusChanged,
    ProjectCreated,
)
from deardiary.schemas.events.registry import (
    ModelAliasSet,
    ModelCreated,
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
