"""One fixed instance of every event type (fixed ids and times, no randomness)."""

from __future__ import annotations

from deardiary.schemas.envelope import Envelope
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    ArtifactBackend,
    ArtifactStored,
    CheckpointDiscarded,
    CheckpointFile,
    CheckpointSaved,
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    Environment,
    EnvironmentCaptured,
    Event,
    ExperimentCreated,
    ExperimentStatus,
    ExperimentStatusChanged,
    HistogramLogged,
    IterationEnded,
    IterationHeartbeat,
    IterationMoved,
    IterationStarted,
    IterationStatus,
    LogLinesLogged,
    MediaKind,
    MediaLogged,
    MetadataSet,
    MetricsLogged,
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    ModelVersionUsed,
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
    partition_key,
)

ENV = Environment(
    python_version="3.11.7",
    platform="Linux-x86_64",
    entrypoint="train.py",
    argv=["train.py", "--lr", "0.01"],
    git_sha="0123456789abcdef0123456789abcdef01234567",
    git_branch="main",
    git_dirty=True,
    git_diff="--- a/x\n+++ b/x\n",
    pip_freeze="numpy==2.0.0\n",
    files={"requirements.txt": "numpy\n"},
)

EXAMPLES: list[Event] = [
    ProjectCreated(project_id="p1", name="mnist", description="digits"),
    ExperimentCreated(experiment_id="e1", project_id="p1", name="lr-sweep"),
    ExperimentStatusChanged(experiment_id="e1", status=ExperimentStatus.COMPLETED),
    IterationStarted(
        iteration_id="i1",
        experiment_id="e1",
        project_id="p1",
        name="trial-1",
        parent_iteration_id="i0",
        external_id="ext-1",
        notes="n",
        tags={"a": "b"},
        metadata={"k": [1, 2]},
        environment=ENV,
    ),
    IterationHeartbeat(iteration_id="i1"),
    IterationEnded(iteration_id="i1", status=IterationStatus.FAILED, error_message="boom"),
    EnvironmentCaptured(iteration_id="i1", environment=ENV),
    ParamsLogged(iteration_id="i1", params={"lr": "0.01", "bs": "32"}, section="opt"),
    MetricsLogged.from_points(
        "i1",
        ["loss", "acc", "loss"],
        [0.5, float("nan"), float("-inf")],
        [-1, 3, 7],
        [1_800_000_000_000_000, 1_800_000_000_000_001, 1_800_000_000_000_002],
        "training",
    ),
    LogLinesLogged(
        iteration_id="i1",
        times=[1, 2],
        levels=["INFO", "ERROR"],
        messages=["hello", "oops"],
        source="stdout",
    ),
    ArtifactStored(
        artifact_id="a1",
        experiment_id="e1",
        iteration_id="i1",
        name="ckpt/model.pt",
        description="d",
        backend=ArtifactBackend.FILESYSTEM,
        uri="file:///x",
        size_bytes=5,
        content_hash="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        media_type="application/octet-stream",
    ),
    ModelCreated(model_id="m1", project_id="p1", name="clf", description="d", tags={"t": ""}),
    ModelVersionCreated(
        model_version_id="v1",
        model_id="m1",
        iteration_id="i1",
        artifact_id="a1",
        description="first",
        tags={"x": "y"},
    ),
    ModelVersionStaged(
        model_version_id="v1", model_id="m1", stage=ModelStage.PRODUCTION, archive_existing=True
    ),
    ModelAliasSet(model_id="m1", alias="champion", model_version_id="v1"),
    TagsSet(entity=EntityKind.ITERATION, entity_id="i1", tags={"k": "v"}),
    TagsDeleted(entity=EntityKind.ITERATION, entity_id="i1", keys=["k"]),
    NotesSet(entity=EntityKind.EXPERIMENT, entity_id="e1", notes="notes"),
    DescriptionSet(entity=EntityKind.PROJECT, entity_id="p1", description="desc"),
    MetadataSet(entity=EntityKind.MODEL, entity_id="m1", metadata={"a": 1, "b": None}),
    EntityArchived(entity=EntityKind.ARTIFACT, entity_id="a1", archived=True),
    EntityDeleted(entity=EntityKind.MODEL_VERSION, entity_id="v1"),
    UserCreated(
        user_id="u1",
        username="ann",
        password_hash="scrypt$16384$8$1$c2FsdA$aGFzaA",
        first_name="Ann",
        last_name="Lee",
        is_admin=True,
    ),
    UserPasswordChanged(user_id="u1", password_hash="scrypt$16384$8$1$c2FsdA$bmV3"),
    UserAdminSet(user_id="u1", is_admin=False),
    PermissionGranted(user_id="u1", project_id="p1", create=True, read=True),
    PermissionRevoked(user_id="u1", project_id="p1"),
    AccessTokenCreated(
        token_id="t1",
        user_id="u1",
        token_hash="sha256$00",
        description="ci",
        expires_at=1_900_000_000_000_000,
    ),
    AccessTokenRevoked(token_id="t1"),
    # release 2 (issue 14): names, restore, moves
    EntityRenamed(entity=EntityKind.EXPERIMENT, entity_id="e1", name="lr-sweep-2"),
    EntityRestored(entity=EntityKind.MODEL_VERSION, entity_id="v1"),
    IterationMoved(iteration_id="i1", experiment_id="e2"),
    # release 2 (issue 14): media, histograms, checkpoints
    MediaLogged(
        iteration_id="i1",
        key="samples",
        step=3,
        index=1,
        kind=MediaKind.IMAGE,
        content_hash="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        size_bytes=5,
        media_type="image/png",
        caption="a cat",
        width=2,
        height=1,
        metadata={"label": 7},
    ),
    HistogramLogged(
        iteration_id="i1", key="weights", step=3, edges=[0.0, 0.5, 1.0], counts=[2.0, 5.0]
    ),
    CheckpointSaved(
        iteration_id="i1",
        checkpoint_id="c1",
        step=3,
        name="epoch-3",
        files=[
            CheckpointFile(
                path="model.pt",
                content_hash="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                size_bytes=5,
            )
        ],
        metrics={"loss": 0.25},
        metadata={"epoch": 3},
    ),
    CheckpointDiscarded(iteration_id="i1", checkpoint_id="c1", reason="keep best 1"),
    ModelVersionUsed(iteration_id="i1", model_version_id="v1", purpose="evaluation"),
]

# Later wire forms of an existing type, as `<tag>.<variant>` (each file written once too).
VARIANTS: dict[str, Event] = {
    # issue 15: an entity event stamped with its owner (the partition of a version's model)
    "tags_set.owner": TagsSet(
        entity=EntityKind.MODEL_VERSION, entity_id="v1", owner="m1", tags={"k": "v"}
    ),
    "entity_archived.owner": EntityArchived(
        entity=EntityKind.ARTIFACT, entity_id="a1", owner="i1", archived=True
    ),
}


def envelope(event: Event) -> Envelope:
    tag = event_tag(event)
    return Envelope(
        event_id=f"golden-{tag}",
        body=event,
        key=partition_key(event),
        client_time=1_800_000_000_000_000,
        actor="golden",
    )
