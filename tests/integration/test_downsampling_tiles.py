"""Series reads on a real store with segments, tiles and hot points mixed: downsampling
from tiles (per-segment rollups) against a plain-Python reference with tile-aligned
buckets, and the full history in step and log order."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.queries.metric_series import TILE_STEPS, downsampled, history
from deardiary.projections.store import DuckDBProjectionStore
from tests.builders import metrics, records, sweep_start
from tests.series_reference import Point, bucket_extremes

VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]),
    st.floats(-1e6, 1e6, allow_nan=False),
)
# (step, value) points of one series, logged in three batches: two compacted, one hot.
BATCHES = st.lists(
    st.lists(st.tuples(st.integers(0, 40 * TILE_STEPS), VALUES), min_size=5, max_size=60),
    min_size=3,
    max_size=3,
)


def reference(points: Sequence[Point], max_points: int) -> list[tuple[int, str]]:
    """Buckets of whole tiles, `width` tiles each, from the first tile with a point."""
    buckets = max(1, max_points // 2)
    first = min(p[0] for p in points) // TILE_STEPS
    tiles = max(p[0] for p in points) // TILE_STEPS - first + 1
    assert tiles >= buckets  # the tile path
    width = -(-tiles // buckets)
    groups: dict[int, list[Point]] = {}
    for p in points:
        groups.setdefault((p[0] // TILE_STEPS - first) // width, []).append(p)
    kept: set[Point] = set()
    for group in groups.values():
        kept |= bucket_extremes(group)
    return sorted((s, repr(v + 0.0 if v == 0 else v)) for s, v, _ in kept)


@settings(max_examples=30, deadline=None)
@given(BATCHES, st.integers(4, 12))
def test_downsampling_from_tiles_matches_the_reference(
    batches: list[list[tuple[int, float]]], max_points: int
) -> None:
    points: list[Point] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBProjectionStore(tmp)
        recs = records(
            [*sweep_start(), *(metrics("it-1", [("loss", v, s) for s, v in b]) for b in batches)]
        )
        for n, rec in enumerate(recs):
            store.apply(fold(store.load_prior(lookups_for([rec])), [rec]))
            if n in (3, 4):
                store.compact()  # the first two batches live in segments (and tiles)
        for offset, batch in enumerate(batches):
            points += [(s, v, offset * 1000 + i) for i, (s, v) in enumerate(batch)]
        conn = store.reader()
        steps = [p[0] for p in points]
        tiles = max(steps) // TILE_STEPS - min(steps) // TILE_STEPS + 1
        assume(len(points) > max_points and tiles >= max_points // 2)  # the tile path
        got = downsampled(conn, "it-1", "loss", max_points)
        assert got.num_rows <= max_points
        rows = zip(got["step"].to_pylist(), got["value"].to_pylist(), strict=True)
        assert sorted((s, repr(v + 0.0 if v == 0 else v)) for s, v in rows) == reference(
            points, max_points
        )
        full = history(conn, "it-1", "loss")  # segments, then hot points, in log order
        in_order = sorted(points, key=lambda p: (p[0], p[2]))
        assert full["step"].to_pylist() == [p[0] for p in in_order]
        assert [repr(v) for v in full["value"].to_pylist()] == [repr(p[1]) for p in in_order]
        conn.close()
        store.close()
