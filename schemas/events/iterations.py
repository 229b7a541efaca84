"""Iterations (a run, trial or task): start, heartbeat, end, and the environment snapshot."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from deardiary.schemas.events.base import Event, Permission
from deardiary.schemas.iteration_status import IterationStatus
from deardiary.schemas.limits import Document, Id, IdOrEmpty, Metadata, Name, Tags, Text
from deardiary.schemas.rules import keys_problem, metadata_problem

__all__ = [
    "Environment",
    "EnvironmentCaptured",
    "IterationEnded",
    "IterationEvent",
    "IterationHeartbeat",
    "IterationMoved",
    "IterationStarted",
    "IterationStatus",
]


class Environment(msgspec.Struct, frozen=True, kw_only=True):
    """What is needed to reproduce a run; `files` are dependency manifests by relative path."""

    python_version: Name = ""
    platform: Name = ""
    entrypoint: Text = ""
    argv: list[Text] = []
    git_sha: Name | None = None
    git_branch: Name | None = None
    git_dirty: bool = False
    git_diff: Document = ""
    pip_freeze: Document = ""
    files: dict[Text, Document] = {}


class IterationEvent(Event, frozen=True, kw_only=True):
    """Events of one iteration: ordered by it, about it, written with create permission."""

    partition_fields: ClassVar[tuple[str, ...]] = ("iteration_id",)
    subject_kind: ClassVar[str] = "iteration"
    subject_field: ClassVar[str] = "iteration_id"
    parent_kind: ClassVar[str] = "iteration"
    parent_field: ClassVar[str] = "iteration_id"


class IterationStarted(IterationEvent, frozen=True, kw_only=True, tag="iteration_started"):
    """A second start of the same id (same external id) resumes the iteration.

    `project_id` is carried (added in schema 1 with a default) so the fold never needs
    another aggregate's state: in Kafka mode the experiment lives in another partition.
    """

    parent_kind: ClassVar[str] = "experiment"
    parent_field: ClassVar[str] = "experiment_id"

    iteration_id: Id
    experiment_id: Id
    project_id: IdOrEmpty = ""
    name: Name = ""
    parent_iteration_id: IdOrEmpty | None = None
    external_id: Name | None = None
    notes: Text = ""
    tags: Tags = {}
    metadata: Metadata = {}
    environment: Environment | None = None
    cloned_from: IdOrEmpty | None = None
    """The iteration this one was cloned (forked) from: its params and config were copied."""

    def problem(self) -> str | None:
        return keys_problem(self.tags, "tag") or metadata_problem(self.metadata)


class IterationHeartbeat(IterationEvent, frozen=True, kw_only=True, tag="iteration_heartbeat"):
    iteration_id: Id


class IterationEnded(IterationEvent, frozen=True, kw_only=True, tag="iteration_ended"):
    iteration_id: Id
    status: IterationStatus
    error_message: Text = ""


class EnvironmentCaptured(IterationEvent, frozen=True, kw_only=True, tag="environment_captured"):
    """The environment snapshot, sent after the start so that starting never waits for it."""

    iteration_id: Id
    environment: Environment


class IterationMoved(IterationEvent, frozen=True, kw_only=True, tag="iteration_moved"):
    """The iteration now belongs to another experiment of the same project (its params,
    metrics and history go with it). It writes into the target experiment's project, so
    an experiment of another project is refused: entities never change project."""

    parent_kind: ClassVar[str] = "experiment"
    parent_field: ClassVar[str] = "experiment_id"
    permission: ClassVar[Permission] = Permission.UPDATE

    iteration_id: Id
    experiment_id: Id
