"""Properties of fold + store: batch splits, redelivery and duplicates never change the state."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.fold import Record, fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.events import (
    CheckpointDiscarded,
    CheckpointSaved,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    Event,
    HistogramLogged,
    IterationEnded,
    IterationStatus,
    MediaKind,
    MediaLogged,
    ParamsLogged,
    TagsSet,
)
from tests.builders import metrics, records, sweep_start
from tests.store_snapshot import snapshot

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, 1.0]),
)
POINT = st.tuples(st.sampled_from(["loss", "acc", "lr"]), VALUES, st.sampled_from([-1, -1, 0, 5]))


@st.composite
def event_streams(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = list(sweep_start())
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(
            st.sampled_from(
                ["metrics", "metrics", "val", "params", "tags", "end", "media", "ckpt", "move"]
            )
        )
        if kind == "metrics":
            events.append(metrics("it-1", draw(st.lists(POINT, min_size=1, max_size=20))))
        elif kind == "val":  # another group of the same keys: its own steps (issue 14)
            points = draw(st.lists(POINT, min_size=1, max_size=10))
            events.append(metrics("it-1", points, group="val"))
        elif kind == "media":
            step = draw(st.integers(0, 3))
            events.append(
                MediaLogged(
                    iteration_id="it-1",
                    key=draw(st.sampled_from(["img", "txt"])),
                    step=step,
                    kind=MediaKind.TEXT,
                    text=draw(st.sampled_from(["a", "b"])),
                )
            )
            events.append(
                HistogramLogged(
                    iteration_id="it-1", key="w", step=step, edges=[0.0, 1.0], counts=[step]
                )
            )
        elif kind == "ckpt":
            checkpoint = draw(st.sampled_from(["c1", "c2"]))
            if draw(st.booleans()):
                metrics_at = {"loss": draw(VALUES)}
                events.append(
                    CheckpointSaved(
                        iteration_id="it-1",
                        checkpoint_id=checkpoint,
                        step=draw(st.integers(0, 5)),
                        metrics=metrics_at,
                    )
                )
            else:
                events.append(CheckpointDiscarded(iteration_id="it-1", checkpoint_id=checkpoint))
        elif kind == "move":
            name = draw(st.sampled_from(["exp", "exp-2"]))
            if draw(st.booleans()):
                events.append(
                    EntityRenamed(entity=EntityKind.ITERATION, entity_id="it-1", name=name)
                )
            else:
                events.append(EntityDeleted(entity=EntityKind.ITERATION, entity_id="it-1"))
                events.append(EntityRestored(entity=EntityKind.ITERATION, entity_id="it-1"))
        elif kind == "params":
            key = draw(st.sampled_from(["a", "b"]))
            events.append(
                ParamsLogged(iteration_id="it-1", params={key: draw(st.sampled_from("xy"))})
            )
        elif kind == "tags":
            tags = {draw(st.sampled_from("pq")): draw(st.sampled_from("uv"))}
            events.append(TagsSet(entity=EntityKind.ITERATION, entity_id="it-1", tags=tags))
        else:
            status = draw(st.sampled_from(list(IterationStatus)))
            events.append(IterationEnded(iteration_id="it-1", status=status))
    return events


def _apply_in_batches(batches: Sequence[Sequence[Record]]) -> dict[str, list[tuple[object, ...]]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBProjectionStore(tmp, hot_points_limit=7, max_small_segments=2)
        try:
            for batch in batches:
                store.apply(fold(store.load_prior(lookups_for(batch)), batch))
            reader = store.reader()
            try:
                return snapshot(reader)
            finally:
                reader.close()
        finally:
            store.close()


def _split(items: list[Record], cuts: list[int]) -> list[list[Record]]:
    points = sorted({c % (len(items) + 1) for c in cuts})
    bounds = [0, *points, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=30, deadline=None)
@given(event_streams(), st.lists(st.integers(0, 100), max_size=6), st.data())
def test_any_batch_split_redelivery_and_duplicates_give_the_same_state(
    events: list[Event], cuts: list[int], data: st.DataObject
) -> None:
    log = records(events)
    expected = _apply_in_batches([log])

    batches = _split(log, cuts)
    assert _apply_in_batches(batches) == expected

    # Redelivery: every batch is delivered again right after it was applied.
    assert _apply_in_batches([b for batch in batches for b in (batch, batch)]) == expected

    # Duplicates: events re-appended later at new offsets of another partition.
    dupes = data.draw(st.lists(st.sampled_from(log), max_size=5))
    resent = [(LogPosition(1, i, pos.log_time), env) for i, (pos, env) in enumerate(dupes)]
    assert _apply_in_batches([*batches, resent]) == expected
