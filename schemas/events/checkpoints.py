"""Checkpoints: a set of files an iteration saved at a step, with metadata and the metrics
at that step. The files are in the content-addressed artifact store (identical files are
stored once); retention discards checkpoints, and content nothing else names is freed."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from deardiary.schemas.events.base import Permission
from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.events.media import SHA256
from deardiary.schemas.limits import (
    MAX_FILES,
    ExplicitStep,
    Id,
    Key,
    Metadata,
    Name,
    SizeBytes,
    Text,
)
from deardiary.schemas.rules import key_problem, keys_problem, metadata_problem


class CheckpointFile(msgspec.Struct, frozen=True, kw_only=True):
    path: Name
    """Relative path within the checkpoint ("model.pt", "optimizer/state.bin")."""
    content_hash: Id
    size_bytes: SizeBytes


class CheckpointSaved(IterationEvent, frozen=True, kw_only=True, tag="checkpoint_saved"):
    """A checkpoint of the iteration; the same checkpoint id again replaces it."""

    iteration_id: Id
    checkpoint_id: Id
    step: ExplicitStep = 0
    name: Name = ""
    files: Annotated[list[CheckpointFile], Meta(max_length=MAX_FILES)] = []
    metrics: dict[Key, float] = {}
    metadata: Metadata = {}

    def problem(self) -> str | None:
        seen: set[str] = set()
        for f in self.files:
            # "=" too: PyTorch Lightning names its checkpoints "epoch=3-step=400.ckpt"
            problem = key_problem(f.path.replace("=", "_"), max_chars=500)
            if problem is not None:
                return f"checkpoint file {f.path[:300]!r} {problem}"
            if f.path in seen:
                return f"checkpoint file {f.path[:300]!r} is named twice"
            seen.add(f.path)
            if not SHA256.fullmatch(f.content_hash):
                return "a file's content_hash must be 64 lowercase hex digits (sha256)"
        return keys_problem(self.metrics, "metric") or metadata_problem(self.metadata)

    def contents(self) -> list[tuple[str, int]]:
        return [(f.content_hash, f.size_bytes) for f in self.files]


class CheckpointDiscarded(IterationEvent, frozen=True, kw_only=True, tag="checkpoint_discarded"):
    """Retention gave up the checkpoint: it is listed as discarded, and its files are
    deleted from the store unless something else (an artifact, media, another checkpoint)
    names the same bytes."""

    permission: ClassVar[Permission] = Permission.DELETE

    iteration_id: Id
    checkpoint_id: Id
    reason: Text = ""


__all__ = ["CheckpointDiscarded", "CheckpointFile", "CheckpointSaved"]
