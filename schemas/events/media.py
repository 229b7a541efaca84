"""Rich media of an iteration, per key and step: images, figures (Plotly / Vega-Lite JSON),
text samples, small tables -- and histograms (distributions) of values.

Media bytes live in the content-addressed artifact store (identical bytes once); the
event names them by sha256 and size, like an artifact record. A text sample may travel
inline instead. Histograms are small enough to travel whole: bin edges and counts.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated

from msgspec import Meta

from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import (
    MAX_HISTOGRAM_BINS,
    MAX_INDEX,
    MAX_PIXELS,
    ExplicitStep,
    Id,
    IdOrEmpty,
    Key,
    MediaType,
    Metadata,
    SizeBytes,
    Text,
)
from deardiary.schemas.rules import key_problem, metadata_problem

SHA256 = re.compile(r"[0-9a-f]{64}")
Pixels = Annotated[int, Meta(ge=0, le=MAX_PIXELS)]


class MediaKind(StrEnum):
    IMAGE = "image"
    FIGURE = "figure"  # a Plotly or Vega-Lite JSON document (metadata "format")
    TEXT = "text"
    TABLE = "table"  # {"columns": [...], "rows": [[...], ...]} as JSON


class MediaLogged(IterationEvent, frozen=True, kw_only=True, tag="media_logged"):
    """One media item of an iteration at (key, step, index): logging the same three again
    replaces it. `index` tells apart several items of one key at one step (a batch of
    sample images)."""

    iteration_id: Id
    key: Key
    step: ExplicitStep = 0
    index: Annotated[int, Meta(ge=0, le=MAX_INDEX)] = 0
    kind: MediaKind
    content_hash: IdOrEmpty = ""
    size_bytes: SizeBytes = 0
    media_type: MediaType = "application/octet-stream"
    caption: Text = ""
    text: Text = ""
    width: Pixels = 0
    height: Pixels = 0
    metadata: Metadata = {}

    def problem(self) -> str | None:
        problem = key_problem(self.key)
        if problem is not None:
            return f"media key {self.key[:300]!r} {problem}"
        if self.content_hash and not SHA256.fullmatch(self.content_hash):
            return "content_hash must be 64 lowercase hex digits (sha256)"
        if not self.content_hash and self.kind is not MediaKind.TEXT:
            return f"a {self.kind.value} needs its content (content_hash)"
        if not self.content_hash and not self.text:
            return "a text sample needs text or content"
        return metadata_problem(self.metadata)

    def contents(self) -> list[tuple[str, int]]:
        return [(self.content_hash, self.size_bytes)] if self.content_hash else []


class HistogramLogged(IterationEvent, frozen=True, kw_only=True, tag="histogram_logged"):
    """The distribution of a tensor or any values at one step: `counts[i]` values fell in
    [edges[i], edges[i+1]). Logging (key, step) again replaces it."""

    iteration_id: Id
    key: Key
    step: ExplicitStep = 0
    edges: Annotated[list[float], Meta(min_length=2, max_length=MAX_HISTOGRAM_BINS + 1)]
    counts: Annotated[list[float], Meta(min_length=1, max_length=MAX_HISTOGRAM_BINS)]

    def problem(self) -> str | None:
        problem = key_problem(self.key)
        if problem is not None:
            return f"histogram key {self.key[:300]!r} {problem}"
        if len(self.edges) != len(self.counts) + 1:
            return (
                f"a histogram has one more edge than counts ({len(self.edges)} edges,"
                f" {len(self.counts)} counts)"
            )
        if not all(math.isfinite(e) for e in self.edges):
            return "histogram edges must be finite"
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            return "histogram edges must not decrease"
        if not all(math.isfinite(c) and c >= 0 for c in self.counts):
            return "histogram counts must be finite and not negative"
        return None


__all__ = ["SHA256", "HistogramLogged", "MediaKind", "MediaLogged"]
