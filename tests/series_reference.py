"""The plain-Python reference of a downsampling bucket, shared by the series tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[int, float, int]  # step, value, log order


def rank(value: float) -> tuple[int, float]:
    """DuckDB's order for doubles: NaN above everything, -0.0 equal to 0.0."""
    return (1, 0.0) if math.isnan(value) else (0, value + 0.0)


def bucket_extremes(group: Sequence[Point]) -> set[Point]:
    """A bucket's min point and max point, ties to the lowest step then the earliest
    logged; NaN is the max only of a bucket without numbers (a spike must show)."""
    low = min(group, key=lambda p: (rank(p[1]), p[0], p[2]))
    numbers = [p for p in group if not math.isnan(p[1])] or list(group)
    top = max(rank(p[1]) for p in numbers)
    high = min((p for p in numbers if rank(p[1]) == top), key=lambda p: (p[0], p[2]))
    return {low, high}
