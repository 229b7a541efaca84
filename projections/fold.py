"""The fold: a batch of decoded log records in, one `Writes` value out.

`lookups_for` says which stored rows the batch needs; the store loads them into a
`PriorState`; `fold` applies the batch in log order. Records at or before the
stored offset, and event ids already applied, are skipped, so redelivery is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deardiary.projections.draft import Draft, json_value, ts
from deardiary.projections.folds.access import fold_permission, fold_token, fold_user
from deardiary.projections.folds.artifacts import fold_artifact_stored
from deardiary.projections.folds.entities import (
    ENTITY_EVENTS,
    TABLE_OF,
    fold_entity_event,
    fold_experiment_created,
    fold_experiment_status,
    fold_project_created,
)
from deardiary.projections.folds.iterations import (
    fold_environment_captured,
    fold_iteration_ended,
    fold_iteration_heartbeat,
    fold_iteration_started,
    fold_params,
)
from deardiary.projections.folds.logs import fold_log_lines
from deardiary.projections.folds.metrics import fold_metrics
from deardiary.projections.folds.registry import (
    fold_model_alias_set,
    fold_model_created,
    fold_model_version_created,
    fold_model_version_staged,
)
from deardiary.projections.writes import Lookups, PriorState, Writes
from deardiary.schemas.codec import ParkedRecord
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    ArtifactStored,
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EnvironmentCaptured,
    Event,
    ExperimentCreated,
    ExperimentStatusChanged,
    IterationEnded,
    IterationHeartbeat,
    IterationStarted,
    LogLinesLogged,
    MetadataSet,
    MetricsLogged,
    ModelAliasSet,
    ModelCreated,
    ModelVersionCreated,
    ModelVersionStaged,
    NotesSet,
    ParamsLogged,
    PermissionGranted,
    PermissionRevoked,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
    UserAdminSet,
    UserCreated,
    UserPasswordChanged,
    event_tag,
)

Record = tuple[LogPosition, Envelope | ParkedRecord]

_SECRET_FIELDS = ("password_hash", "token_hash")
_ENTITY_ID_FIELDS = (
    ("model_version", "model_version_id"),
    ("artifact", "artifact_id"),
    ("iteration", "iteration_id"),
    ("experiment", "experiment_id"),
    ("model", "model_id"),
    ("access_token", "token_id"),
    ("project", "project_id"),
    ("user", "user_id"),
)


def lookups_for(batch: Sequence[Record]) -> Lookups:
    """The stored rows the fold of this batch may read."""
    want = Lookups()
    for _, env in batch:
        if isinstance(env, ParkedRecord):
            continue
        want.event_ids.add(env.event_id)
        ev = env.body
        match ev:
            case ProjectCreated():
                want.want("projects", ev.project_id)
            case ExperimentCreated():
                want.want("experiments", ev.experiment_id)
            case ExperimentStatusChanged():
                want.want("experiments", ev.experiment_id)
            case IterationStarted():
                want.want("iterations", ev.iteration_id)
                want.want("experiments", ev.experiment_id)
            case IterationHeartbeat() | IterationEnded() | EnvironmentCaptured():
                want.want("iterations", ev.iteration_id)
            case ParamsLogged():
                for key in ev.params:
                    want.want("params", (ev.iteration_id, key))
            case MetricsLogged():
                for key in ev.keys:
                    want.want("last_metrics", (ev.iteration_id, key))
            case ArtifactStored():
                want.want("artifacts", ev.artifact_id)
            case ModelCreated():
                want.want("models", ev.model_id)
            case ModelVersionCreated() | ModelVersionStaged() | ModelAliasSet():
                want.want("models", ev.model_id)
                want.model_versions_of.add(ev.model_id)
            case TagsSet() | TagsDeleted() | NotesSet() | DescriptionSet() | MetadataSet():
                want.want(TABLE_OF[ev.entity], ev.entity_id)
            case EntityArchived() | EntityDeleted():
                want.want(TABLE_OF[ev.entity], ev.entity_id)
            case UserCreated() | UserPasswordChanged() | UserAdminSet():
                want.want("users", ev.user_id)
            case AccessTokenCreated() | AccessTokenRevoked():
                want.want("access_tokens", ev.token_id)
    return want


_FOLDS: dict[type, Callable[[Draft, Any], None]] = {
    MetricsLogged: fold_metrics,
    ProjectCreated: fold_project_created,
    ExperimentCreated: fold_experiment_created,
    ExperimentStatusChanged: fold_experiment_status,
    IterationStarted: fold_iteration_started,
    IterationHeartbeat: fold_iteration_heartbeat,
    IterationEnded: fold_iteration_ended,
    EnvironmentCaptured: fold_environment_captured,
    ParamsLogged: fold_params,
    LogLinesLogged: fold_log_lines,
    ArtifactStored: fold_artifact_stored,
    ModelCreated: fold_model_created,
    ModelVersionCreated: fold_model_version_created,
    ModelVersionStaged: fold_model_version_staged,
    ModelAliasSet: fold_model_alias_set,
    **dict.fromkeys(ENTITY_EVENTS, fold_entity_event),
    UserCreated: fold_user,
    UserPasswordChanged: fold_user,
    UserAdminSet: fold_user,
    PermissionGranted: fold_permission,
    PermissionRevoked: fold_permission,
    AccessTokenCreated: fold_token,
    AccessTokenRevoked: fold_token,
}


def entity_of(ev: Event) -> tuple[str, str]:
    """The (kind, id) an event is about, for the event history."""
    if isinstance(ev, PermissionGranted | PermissionRevoked):
        return "user", ev.user_id
    entity = getattr(ev, "entity", None)
    if entity is not None:
        return str(entity), str(getattr(ev, "entity_id", ""))
    for kind, attr in _ENTITY_ID_FIELDS:  # most specific first
        value = getattr(ev, attr, None)
        if isinstance(value, str):
            return kind, value
    return "", ""


def summary_of(ev: Event) -> Any:
    """What the history shows of an event: its fields, minus secrets and point columns."""
    if isinstance(ev, MetricsLogged):
        return {"iteration_id": ev.iteration_id, "keys": ev.keys, "points": ev.num_points}
    if isinstance(ev, LogLinesLogged):
        return {"iteration_id": ev.iteration_id, "lines": len(ev.messages)}
    body = json_value(ev)
    for secret in _SECRET_FIELDS:
        body.pop(secret, None)
    return body


def fold(prior: PriorState, batch: Sequence[Record]) -> Writes:
    """Apply a batch in log order; pure: same prior and batch, same writes."""
    draft = Draft(prior)
    next_offsets = dict(prior.next_offsets)
    seen = set(prior.seen_event_ids)
    applied: list[str] = []
    for pos, env in batch:
        if pos.offset < next_offsets.get(pos.partition, 0):
            continue  # redelivered: already applied in the transaction that stored the offset
        next_offsets[pos.partition] = pos.offset + 1
        draft.position = pos
        if isinstance(env, ParkedRecord):
            draft.insert(
                "parked_events",
                {
                    "partition": pos.partition,
                    "offset": pos.offset,
                    "event_id": env.event_id,
                    "event_type": env.event_type,
                    "error": env.error,
                    "payload": env.payload,
                },
            )
            continue
        if env.event_id in seen:
            continue  # the same event appended twice (a client resend)
        seen.add(env.event_id)
        applied.append(env.event_id)
        draft.envelope = env
        _FOLDS[type(env.body)](draft, env.body)
        kind, entity_id = entity_of(env.body)
        draft.insert(
            "events",
            {
                "partition": pos.partition,
                "offset": pos.offset,
                "event_id": env.event_id,
                "type": event_tag(env.body),
                "actor": env.actor,
                "client_time": ts(env.client_time),
                "log_time": ts(pos.log_time),
                "entity_kind": kind,
                "entity_id": entity_id,
                "summary": summary_of(env.body),
            },
        )
    return draft.writes(next_offsets, applied)
