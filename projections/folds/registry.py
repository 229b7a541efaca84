"""The model registry: versions numbered 1, 2, 3... per model by the fold; stages; aliases."""

from __future__ import annotations

from deardiary.projections.draft import Draft, json_value
from deardiary.projections.folds.entities import base_row
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import (
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
)


def fold_model_created(draft: Draft, event: ModelCreated) -> None:
    if draft.get("models", event.model_id) is not None:
        return
    draft.put(
        "models",
        base_row(
            draft,
            model_id=event.model_id,
            project_id=event.project_id,
            name=event.name,
            description=event.description,
            tags=dict(event.tags),
            latest_version=0,
        ),
    )


def fold_model_version_created(draft: Draft, event: ModelVersionCreated) -> None:
    if draft.get("model_versions", event.model_version_id) is not None:
        return
    model = draft.get("models", event.model_id)
    if model is None:
        draft.conflict("missing_parent", event.model_version_id, f"model {event.model_id}")
        return
    model["latest_version"] += 1
    model["updated_at"] = draft.log_time
    draft.put("models", model)
    draft.put(
        "model_versions",
        base_row(
            draft,
            model_version_id=event.model_version_id,
            model_id=event.model_id,
            version=model["latest_version"],
            iteration_id=event.iteration_id,
            artifact_id=event.artifact_id,
            stage=ModelStage.NONE.value,
            description=event.description,
            tags=dict(event.tags),
            aliases=[],
            metadata=json_value(event.metadata),
            checkpoint_id=event.checkpoint_id,
        ),
    )


def fold_model_version_staged(draft: Draft, event: ModelVersionStaged) -> None:
    row = draft.get("model_versions", event.model_version_id)
    if row is None or row["model_id"] != event.model_id:
        draft.conflict("not_found", event.model_version_id, "model version")
        return
    if event.archive_existing and event.stage is not ModelStage.NONE:
        for other in draft.rows_where("model_versions", "model_id", event.model_id):
            if other is not row and other["stage"] == event.stage.value:
                other["stage"] = ModelStage.ARCHIVED.value
                other["updated_at"] = draft.log_time
                draft.put("model_versions", other)
    row["stage"] = event.stage.value
    row["updated_at"] = draft.log_time
    draft.put("model_versions", row)


def fold_model_alias_set(draft: Draft, event: ModelAliasSet) -> None:
    """An alias names at most one version of a model: setting it moves it."""
    target = None
    if event.model_version_id is not None:
        target = draft.get("model_versions", event.model_version_id)
        if target is None or target["model_id"] != event.model_id:
            draft.conflict("not_found", event.model_version_id, "model version")
            return
    for version in draft.rows_where("model_versions", "model_id", event.model_id):
        if event.alias in version["aliases"] and version is not target:
            version["aliases"] = [a for a in version["aliases"] if a != event.alias]
            version["updated_at"] = draft.log_time
            draft.put("model_versions", version)
    if target is not None and event.alias not in target["aliases"]:
        target["aliases"] = sorted([*target["aliases"], event.alias])
        target["updated_at"] = draft.log_time
        draft.put("model_versions", target)


def _model_lookups(want: Lookups, event: ModelCreated) -> None:
    want.want("models", event.model_id)


def _versions_lookups(
    want: Lookups, event: ModelVersionCreated | ModelVersionStaged | ModelAliasSet
) -> None:
    want.want("models", event.model_id)
    want.model_versions_of.add(event.model_id)


def _version_created_lookups(want: Lookups, event: ModelVersionCreated) -> None:
    """The version itself too: an id created before under another model is a repeat (the
    fold ignores it), whichever batch created it -- not a new version of this model."""
    _versions_lookups(want, event)
    want.want("model_versions", event.model_version_id)


SPECS: Specs = {
    ModelCreated: FoldSpec(fold_model_created, _model_lookups),
    ModelVersionCreated: FoldSpec(fold_model_version_created, _version_created_lookups),
    ModelVersionStaged: FoldSpec(fold_model_version_staged, _versions_lookups),
    ModelAliasSet: FoldSpec(fold_model_alias_set, _versions_lookups),
}
