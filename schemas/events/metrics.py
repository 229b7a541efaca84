"""Metric points in columnar batches: one event carries many points of one iteration.

Columns are raw little-endian arrays so that a batch decodes without a per-point
loop (numpy/pyarrow view them in place):

* ``keys``: the distinct metric keys of the batch;
* ``key_index``: uint16 per point, an index into ``keys``;
* ``steps``: int64 per point; ``AUTO_STEP`` (-1) means "max(step)+1 for that key";
* ``values``: float64 per point; NaN and +/-inf are legal;
* ``times``: int64 per point, the client's clock in microseconds since the epoch.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from deardiary.schemas.bounds import AUTO_STEP
from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import (
    MAX_METRIC_KEYS,
    MAX_STEP,
    MAX_TIME_US,
    MIN_TIME_US,
    Id,
    Key,
    Name,
)
from deardiary.schemas.rules import keys_problem

__all__ = ["AUTO_STEP", "MetricsLogged"]


def _le(arr: array[int] | array[float]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - no big-endian machines in CI
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _columns_problem(event: MetricsLogged) -> str | None:
    n, rest = divmod(len(event.values), 8)
    if rest:
        return "metrics: values must be 8 bytes (float64) per point"
    for column, size, width in (
        ("key_index", len(event.key_index), 2),
        ("steps", len(event.steps), 8),
        ("times", len(event.times), 8),
    ):
        if size != n * width:
            return (
                f"metrics: {column} has {size} bytes, expected {n * width}"
                f" ({width} per point for {n} points)"
            )
    if len(set(event.keys)) != len(event.keys):
        return "metrics: keys must be distinct"
    if n == 0:
        return None
    import numpy as np  # the SDK builds batches without it; gateway and folds check with it

    if int(np.frombuffer(event.key_index, dtype="<u2").max()) >= len(event.keys):
        return f"metrics: key_index points past the {len(event.keys)} keys"
    steps = np.frombuffer(event.steps, dtype="<i8")
    if int(steps.min()) < AUTO_STEP or int(steps.max()) > MAX_STEP:
        return f"metrics: steps must be 0..{MAX_STEP} (or {AUTO_STEP} for the next step)"
    times = np.frombuffer(event.times, dtype="<i8")
    if int(times.min()) < MIN_TIME_US or int(times.max()) > MAX_TIME_US:
        return f"metrics: times must be {MIN_TIME_US}..{MAX_TIME_US} microseconds since the epoch"
    return None


class MetricsLogged(IterationEvent, frozen=True, kw_only=True, tag="metrics_logged"):
    iteration_id: Id
    keys: Annotated[list[Key], Meta(max_length=MAX_METRIC_KEYS)]
    key_index: bytes
    steps: bytes
    values: bytes
    times: bytes
    group: Name = ""

    @property
    def num_points(self) -> int:
        return len(self.values) // 8

    def problem(self) -> str | None:
        return keys_problem(self.keys, "metric") or _columns_problem(self)

    @classmethod
    def from_points(
        cls,
        iteration_id: str,
        keys: Sequence[str],
        values: Sequence[float],
        steps: Sequence[int],
        times: Sequence[int],
        group: str = "",
    ) -> MetricsLogged:
        """Build a batch from per-point sequences (keys repeat per point)."""
        table: dict[str, int] = {}
        index = array("H", (table.setdefault(k, len(table)) for k in keys))
        return cls(
            iteration_id=iteration_id,
            keys=list(table),
            key_index=_le(index),
            steps=_le(array("q", steps)),
            values=_le(array("d", values)),
            times=_le(array("q", times)),
            group=group,
        )
