"""Iterations (a run, trial or task): start, heartbeat, end, and the environment snapshot."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from deardiary.schemas.events.base import Event


class IterationStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Environment(msgspec.Struct, frozen=True, kw_only=True):
    """What is needed to reproduce a run; `files` are dependency manifests by relative path."""

    python_version: str = ""
    platform: str = ""
    entrypoint: str = ""
    argv: list[str] = []
    git_sha: str | None = None
    git_branch: str | None = None
    git_dirty: bool = False
    git_diff: str = ""
    pip_freeze: str = ""
    files: dict[str, str] = {}


class IterationStarted(Event, frozen=True, kw_only=True, tag="iteration_started"):
    """A second start of the same id (same external id) resumes the iteration.

    `project_id` is carried (added in schema 1 with a default) so the fold never needs
    another aggregate's state: in Kafka mode the experiment lives in another partition.
    """

    iteration_id: str
    experiment_id: str
    project_id: str = ""
    name: str = ""
    parent_iteration_id: str | None = None
    external_id: str | None = None
    notes: str = ""
    tags: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    environment: Environment | None = None


class IterationHeartbeat(Event, frozen=True, kw_only=True, tag="iteration_heartbeat"):
    iteration_id: str


class IterationEnded(Event, frozen=True, kw_only=True, tag="iteration_ended"):
    iteration_id: str
    status: IterationStatus
    error_message: str = ""


class EnvironmentCaptured(Event, frozen=True, kw_only=True, tag="environment_captured"):
    """The environment snapshot, sent after the start so that starting never waits for it."""

    iteration_id: str
    environment: Environment
