"""The event vocabulary: every event type, the tagged union of them all, and each event's
partition key.

Events of one iteration (or one model) share a partition key, so they stay in
order in one partition of the log. What each type declares about itself (partition
key, subject, parent, permission, `problem()`) is in `base.py`.

Importing this package creates no event class: each name is loaded from its module on
first use (PEP 562), so a process that writes a few kinds of event -- an SDK trial of a
sweep: iterations, params, metrics -- creates only those (the other modules' Structs,
with their constraints, were ~5 ms of every trial process's import). `Event` (the
tagged union, which decoding needs) and `EVENT_TYPES` load them all (`union.py`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs an SDK process milliseconds to import
    from typing import Any

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
    from deardiary.schemas.events.union import EVENT_TYPES, Event
    from deardiary.schemas.events.usage import ModelVersionUsed

# Where each name lives (the union's two names: in union.py, which imports every module).
_WHERE: dict[str, str] = {
    **dict.fromkeys(
        (
            "AccessTokenCreated",
            "AccessTokenRevoked",
            "PermissionGranted",
            "PermissionRevoked",
            "UserAdminSet",
            "UserCreated",
            "UserPasswordChanged",
        ),
        "access",
    ),
    **dict.fromkeys(("ArtifactBackend", "ArtifactStored"), "artifacts"),
    **dict.fromkeys(("EntityKind", "Permission"), "base"),
    **dict.fromkeys(("CheckpointDiscarded", "CheckpointFile", "CheckpointSaved"), "checkpoints"),
    **dict.fromkeys(
        (
            "DescriptionSet",
            "EntityArchived",
            "EntityDeleted",
            "EntityRenamed",
            "EntityRestored",
            "MetadataSet",
            "NotesSet",
            "TagsDeleted",
            "TagsSet",
        ),
        "entities",
    ),
    **dict.fromkeys(
        (
            "Environment",
            "EnvironmentCaptured",
            "IterationEnded",
            "IterationHeartbeat",
            "IterationMoved",
            "IterationStarted",
            "IterationStatus",
        ),
        "iterations",
    ),
    "LogLinesLogged": "logs",
    **dict.fromkeys(("HistogramLogged", "MediaKind", "MediaLogged"), "media"),
    **dict.fromkeys(("AUTO_STEP", "MetricsLogged"), "metrics"),
    "ParamsLogged": "params",
    **dict.fromkeys(
        ("ExperimentCreated", "ExperimentStatus", "ExperimentStatusChanged", "ProjectCreated"),
        "projects",
    ),
    **dict.fromkeys(
        (
            "ModelAliasSet",
            "ModelCreated",
            "ModelStage",
            "ModelVersionCreated",
            "ModelVersionStaged",
        ),
        "registry",
    ),
    "ModelVersionUsed": "usage",
    "Event": "union",
    "EVENT_TYPES": "union",
}


if not TYPE_CHECKING:  # hidden from mypy, which checks every name against the imports above

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # __import__, not importlib.import_module: the C import path (and seen by -X importtime)
        value = getattr(__import__(f"{__name__}.{module}", None, None, (name,)), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value


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
