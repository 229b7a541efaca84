"""Anything the event types allow folds: applied, or recorded as a conflict -- never a crash.

Events are generated from the declared types (tests/strategies.py: every type, every
entity kind, every field at the ends of its range), go through the bytes a client
sends, and are folded into a real DuckDB + Parquet store in two batches. Nothing may
raise, nothing may need parking, and a rebuild from the same records (in other batch
sizes) must answer the same.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deardiary.projections.fold import Record, fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import PriorState
from deardiary.schemas.codec import decode_record, encode
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.events import (
    EVENT_TYPES,
    ArtifactStored,
    EntityKind,
    Event,
    ExperimentCreated,
    IterationStarted,
    ModelCreated,
    ModelVersionCreated,
    ProjectCreated,
)
from tests.store_snapshot import snapshot
from tests.strategies import envelopes, struct_of

T0 = 1_800_000_000_000_000
# Entities with the ids the strategies draw from, so generated events meet them.
PARENTS = [
    wrap(e, actor="ann", client_time=T0)
    for e in (
        ProjectCreated(project_id="a", name="a"),
        ExperimentCreated(experiment_id="a", project_id="a", name="a"),
        IterationStarted(iteration_id="a", experiment_id="a", project_id="a"),
        ModelCreated(model_id="a", project_id="a", name="a"),
        ModelVersionCreated(model_version_id="a", model_id="a", iteration_id="a"),
        ArtifactStored(
            artifact_id="a",
            experiment_id="a",
            iteration_id="a",
            name="a",
            uri="u",
            size_bytes=1,
            content_hash="0" * 64,
        ),
    )
]


def _records(batch: Sequence[Envelope]) -> list[Record]:
    """As the log hands them out: decoded from the bytes a client sent."""
    return [
        (LogPosition(0, i, T0 + i), decode_record(encode(e)))
        for i, e in enumerate([*PARENTS, *batch])
    ]


def _fold_in(store: DuckDBProjectionStore, records: Sequence[Record], size: int) -> None:
    for start in range(0, len(records), size):
        part = records[start : start + size]
        store.apply(fold(store.load_prior(lookups_for(part)), part))


@contextmanager
def _live_and_rebuilt(
    records: Sequence[Record], size: int
) -> Iterator[tuple[DuckDBProjectionStore, DuckDBProjectionStore]]:
    """Two stores of `records`: folded live in batches of `size`, and rebuilt in one."""
    with tempfile.TemporaryDirectory() as tmp:
        live = DuckDBProjectionStore(Path(tmp) / "live")
        rebuilt = DuckDBProjectionStore(Path(tmp) / "rebuilt")
        try:
            _fold_in(live, records, size)
            _fold_in(rebuilt, records, len(records))
            yield live, rebuilt
        finally:
            live.close()
            rebuilt.close()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(envelopes(), min_size=1, max_size=8), st.integers(1, 5))
def test_every_declared_event_folds_and_rebuilds_the_same(batch: list[Envelope], size: int) -> None:
    with _live_and_rebuilt(_records(batch), size) as (live, rebuilt):
        parked = live.conn.execute("SELECT event_type, error FROM parked_events").fetchall()
        assert parked == []
        applied = live.conn.execute("SELECT count(*) FROM events").fetchall()[0][0]
        assert applied == len(PARENTS) + len({e.event_id for e in batch})
        assert snapshot(live.reader()) == snapshot(rebuilt.reader())


def _type_and_kind() -> list[tuple[type[Event], EntityKind | None]]:
    """Every event type, and every entity kind for the types that name one."""
    cases: list[tuple[type[Event], EntityKind | None]] = []
    for event_type in EVENT_TYPES:
        names = {f.name for f in msgspec.structs.fields(event_type)}
        kinds: list[EntityKind | None] = list(EntityKind) if "entity" in names else [None]
        cases += [(event_type, kind) for kind in kinds]
    return cases


@pytest.mark.parametrize(
    ("event_type", "kind"),
    _type_and_kind(),
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_every_type_at_every_kind_is_applied_or_a_conflict(
    event_type: type[Event], kind: EntityKind | None
) -> None:
    info = mi.type_info(event_type)
    assert isinstance(info, mi.StructType)
    events = struct_of(info)
    if kind is not None:
        events = events.map(lambda e: msgspec.structs.replace(e, entity=kind))

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(st.lists(events, min_size=1, max_size=4))
    def folds(batch: list[Event]) -> None:
        envs = [wrap(e, actor="ann", client_time=T0) for e in batch]
        writes = fold(PriorState(), _records(envs))
        assert writes.inserts.get("parked_events", []) == []
        assert len(writes.inserts["events"]) == len(PARENTS) + len(batch)

    folds()


@pytest.mark.parametrize("size", [1, 2])
def test_a_version_id_created_before_under_another_model_is_a_repeat_in_any_batch(
    size: int,
) -> None:
    """Version `a` exists (of model `a`); creating it again under a model `b` that does not
    exist is a repeat the fold ignores. The live projector met it in a later batch and saw
    only model `b`'s versions, so it recorded `missing_parent` where a rebuild, meeting
    both in one batch, recorded nothing (found by the generated test above)."""
    again = wrap(ModelVersionCreated(model_version_id="a", model_id="b"), client_time=T0)
    with _live_and_rebuilt(_records([again]), size) as (live, rebuilt):
        assert live.conn.execute("SELECT * FROM conflicts").fetchall() == []
        assert snapshot(live.reader()) == snapshot(rebuilt.reader())
