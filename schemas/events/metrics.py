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

from deardiary.schemas.events.base import Event

AUTO_STEP = -1


def _le(arr: array[int] | array[float]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - no big-endian machines in CI
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


class MetricsLogged(Event, frozen=True, kw_only=True, tag="metrics_logged"):
    iteration_id: str
    keys: list[str]
    key_index: bytes
    steps: bytes
    values: bytes
    times: bytes
    group: str = ""

    @property
    def num_points(self) -> int:
        return len(self.values) // 8

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
