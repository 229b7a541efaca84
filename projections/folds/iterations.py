"""Iterations: start (or resume), heartbeat, end; and their parameters."""

from __future__ import annotations

from deardiary.projections.draft import Draft, json_value
from deardiary.projections.folds.entities import base_row
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import (
    EnvironmentCaptured,
    IterationEnded,
    IterationHeartbeat,
    IterationMoved,
    IterationStarted,
    IterationStatus,
    ParamsLogged,
)


def fold_iteration_started(draft: Draft, event: IterationStarted) -> None:
    row = draft.get("iterations", event.iteration_id)
    if row is not None:
        # The same id started again (a restarted trial with the same external id): resume.
        row.update(status=IterationStatus.RUNNING.value, end_date=None, error_message="")
        row["updated_at"] = row["last_heartbeat"] = draft.log_time
        row["tags"] = {**row["tags"], **event.tags}
        if event.environment is not None:
            row["environment"] = json_value(event.environment)
        draft.put("iterations", row)
        return
    project_id = event.project_id
    if not project_id:  # written by a client that did not carry it: look it up
        experiment = draft.get("experiments", event.experiment_id)
        project_id = experiment["project_id"] if experiment else ""
    draft.put(
        "iterations",
        base_row(
            draft,
            iteration_id=event.iteration_id,
            experiment_id=event.experiment_id,
            project_id=project_id,
            name=event.name,
            parent_iteration_id=event.parent_iteration_id,
            external_id=event.external_id,
            status=IterationStatus.RUNNING.value,
            error_message="",
            notes=event.notes,
            tags=dict(event.tags),
            metadata=json_value(event.metadata),
            environment=None if event.environment is None else json_value(event.environment),
            end_date=None,
            last_heartbeat=draft.log_time,
            description="",
            config={},
            cloned_from=event.cloned_from,
        ),
    )


def fold_iteration_heartbeat(draft: Draft, event: IterationHeartbeat) -> None:
    row = draft.existing("iterations", event.iteration_id, "iteration")
    if row is None:
        return
    row["last_heartbeat"] = draft.log_time
    draft.put("iterations", row)


def fold_environment_captured(draft: Draft, event: EnvironmentCaptured) -> None:
    row = draft.existing("iterations", event.iteration_id, "iteration")
    if row is None:
        return
    row["environment"] = json_value(event.environment)
    draft.put("iterations", row)


def fold_iteration_ended(draft: Draft, event: IterationEnded) -> None:
    row = draft.existing("iterations", event.iteration_id, "iteration")
    if row is None:
        return
    row.update(status=event.status.value, error_message=event.error_message)
    row["end_date"] = row["updated_at"] = row["last_heartbeat"] = draft.log_time
    draft.put("iterations", row)


def fold_iteration_moved(draft: Draft, event: IterationMoved) -> None:
    """Into another experiment of its project. Where the target experiment is in this
    partition's store it is checked (the gateway checks it for every writer)."""
    row = draft.existing("iterations", event.iteration_id, "iteration")
    if row is None:
        return
    experiment = draft.get("experiments", event.experiment_id)
    if experiment is not None and experiment["project_id"] != row["project_id"]:
        draft.conflict(
            "cross_project_move",
            event.iteration_id,
            f"experiment {event.experiment_id!r} is in another project; iterations never"
            " change project",
        )
        return
    row["experiment_id"] = event.experiment_id
    row["updated_at"] = draft.log_time
    draft.put("iterations", row)


def fold_params(draft: Draft, event: ParamsLogged) -> None:
    """Write-once per (section, key): the same value again is a no-op, a different one a
    recorded conflict. A nested config is kept whole in the iteration's `config`, per
    section (merged key by key)."""
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    shown = f"{event.section}/" if event.section else ""
    for key in sorted(event.params):
        value = event.params[key]
        existing = draft.get("params", (event.iteration_id, event.section, key))
        if existing is not None:
            if existing["value"] != value:
                draft.conflict(
                    "param_changed",
                    event.iteration_id,
                    f"param {shown}{key!r} is {existing['value']!r}; refused {value!r}",
                )
            continue
        draft.put(
            "params",
            {
                "iteration_id": event.iteration_id,
                "key": key,
                "value": value,
                "section": event.section,
                "logged_at": draft.log_time,
                "type": event.types.get(key, "str"),
            },
        )
    if event.config:
        row = draft.get("iterations", event.iteration_id)
        if row is not None:
            config = dict(row["config"] or {})
            config[event.section] = {**config.get(event.section, {}), **json_value(event.config)}
            row["config"] = config
            draft.put("iterations", row)


def _started_lookups(want: Lookups, event: IterationStarted) -> None:
    want.want("iterations", event.iteration_id)
    want.want("experiments", event.experiment_id)


def _iteration_lookups(
    want: Lookups, event: IterationHeartbeat | IterationEnded | EnvironmentCaptured
) -> None:
    want.want("iterations", event.iteration_id)


def _moved_lookups(want: Lookups, event: IterationMoved) -> None:
    want.want("iterations", event.iteration_id)
    want.want("experiments", event.experiment_id)


def _params_lookups(want: Lookups, event: ParamsLogged) -> None:
    want.want_exists("iterations", event.iteration_id)
    if event.config:
        want.want("iterations", event.iteration_id)
    for key in event.params:
        want.want("params", (event.iteration_id, event.section, key))


SPECS: Specs = {
    IterationStarted: FoldSpec(fold_iteration_started, _started_lookups),
    IterationHeartbeat: FoldSpec(fold_iteration_heartbeat, _iteration_lookups),
    IterationEnded: FoldSpec(fold_iteration_ended, _iteration_lookups),
    EnvironmentCaptured: FoldSpec(fold_environment_captured, _iteration_lookups),
    IterationMoved: FoldSpec(fold_iteration_moved, _moved_lookups),
    ParamsLogged: FoldSpec(fold_params, _params_lookups),
}
