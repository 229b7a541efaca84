"""Every event lands in the partition that holds what its fold reads.

In Kafka mode each partition is folded by one worker into a store of its own, so a fold
can only see rows created by events of the same partition key. For every event type
(one example each, tests/golden/examples.py) passed through the gateway's checker, each
entity row its fold looks up (`FoldSpec.lookups`) must have been created by an event of
the same partition key -- the checker stamps entity events aimed at a model version or
an artifact with their owner (`EntityEvent.owner`) for that. Embedded mode has one
partition, so only this test (and tests/integration/test_kafka_mode.py on a real broker)
would notice otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from deardiary.projections.fold import SPECS
from deardiary.projections.folds.entities import TABLE_OF
from deardiary.projections.writes import Lookups
from deardiary.schemas.envelope import Envelope, wrap
from deardiary.schemas.events import (
    ArtifactStored,
    EntityKind,
    Event,
    ExperimentCreated,
    IterationMoved,
    IterationStarted,
    ModelCreated,
    ModelVersionCreated,
    NotesSet,
    ProjectCreated,
    TagsSet,
    event_tag,
)
from deardiary.schemas.records import encode_records
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.gateway.parents import IngestParents
from tests.golden.examples import EXAMPLES

World = tuple[IngestParents, dict[tuple[str, str], str]]
HASH = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

# Lookups a fold makes of another partition's rows on purpose, and why that is safe.
ELSEWHERE = {
    # only read when the event carries no project_id; the checker stamps it (tested below)
    (IterationStarted, "experiments"),
    # the target experiment is checked where it happens to be in the same store; the
    # gateway resolves the move in the target's project for every writer
    (IterationMoved, "experiments"),
}


def _creators() -> list[Event]:
    """The examples' world: what creates p1, e1, e2, i1, m1, v1, a1 (and a2, an artifact
    of the experiment alone)."""
    kinds = (
        ProjectCreated,
        ExperimentCreated,
        IterationStarted,
        ModelCreated,
        ModelVersionCreated,
        ArtifactStored,
    )
    made = [e for e in EXAMPLES if isinstance(e, kinds)]
    return [
        *made,
        ExperimentCreated(experiment_id="e2", project_id="p1", name="holdout"),
        ArtifactStored(
            artifact_id="a2",
            experiment_id="e1",
            name="data.csv",
            uri="file:///d",
            size_bytes=5,
            content_hash=HASH,
        ),
    ]


def _homes(creators: Sequence[Event]) -> dict[tuple[str, str], str]:
    """(table, key) of each entity row -> the partition key of the event creating it."""
    homes = {}
    for event in creators:
        kind, entity_id = event.subject()
        homes[(TABLE_OF[EntityKind(kind)], entity_id)] = event.partition_key()
    return homes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    store = EmbeddedStore(tmp_path_factory.mktemp("partitions"))
    creators = _creators()
    assert store.log is not None
    store.log.append(encode_records(wrap(e) for e in creators))
    store.catch_up()

    async def caught_up() -> None:
        store.catch_up()

    parents = IngestParents(store.store.reader, caught_up)
    yield parents, _homes(creators)
    store.close()


def _checked(parents: IngestParents, *events: Event) -> list[Envelope]:
    return list(asyncio.run(parents.check(None, [wrap(e) for e in events])))


@pytest.mark.parametrize("event", EXAMPLES, ids=event_tag)
def test_what_a_fold_reads_is_in_its_events_partition(world: World, event: Event) -> None:
    parents, homes = world
    (checked,) = _checked(parents, event)
    body = checked.body
    assert checked.key == body.partition_key()
    want = Lookups()
    SPECS[type(body)].lookups(want, body)
    read = [(t, str(k)) for t, keys in [*want.keys.items(), *want.exists.items()] for k in keys]
    for table, key in read:
        home = homes.get((table, key))
        if home is None or (type(body), table) in ELSEWHERE:
            continue
        assert home == checked.key, (
            f"{event_tag(body)} is keyed {checked.key!r} but its fold reads"
            f" {table}[{key!r}], whose events are keyed {home!r}"
        )


def test_entity_events_on_versions_and_artifacts_carry_their_owner(
    world: World,
) -> None:
    parents, _ = world
    on = {
        (EntityKind.MODEL_VERSION, "v1"): "m1",
        (EntityKind.ARTIFACT, "a1"): "i1",  # an iteration's artifact: its iteration
        (EntityKind.ARTIFACT, "a2"): "e1",  # an experiment's: its experiment
        (EntityKind.ITERATION, "i1"): "",  # keyed by their own id
        (EntityKind.MODEL, "m1"): "",
    }
    for (kind, entity_id), owner in on.items():
        for sent in ("", "i1", "elsewhere"):  # what a client claims is replaced
            event = TagsSet(entity=kind, entity_id=entity_id, owner=sent, tags={"k": "v"})
            (checked,) = _checked(parents, event)
            assert isinstance(checked.body, TagsSet)
            assert checked.body.owner == owner
            assert checked.key == (owner or entity_id)


def test_an_owner_created_in_the_same_batch(
    world: World,
) -> None:
    parents, _ = world
    version = ModelVersionCreated(model_version_id="v9", model_id="m1")
    artifact = ArtifactStored(
        artifact_id="a9",
        experiment_id="e1",
        iteration_id="i1",
        name="m.pt",
        uri="file:///m",
        size_bytes=5,
        content_hash=HASH,
    )
    batch = _checked(
        parents,
        version,
        TagsSet(entity=EntityKind.MODEL_VERSION, entity_id="v9", tags={"k": "v"}),
        artifact,
        NotesSet(entity=EntityKind.ARTIFACT, entity_id="a9", notes="n"),
    )
    assert [e.key for e in batch] == ["m1", "m1", "i1", "i1"]


def test_an_iteration_started_without_its_project_gets_it(
    world: World,
) -> None:
    parents, _ = world
    started = IterationStarted(iteration_id="i7", experiment_id="e2", name="old client")
    (checked,) = _checked(parents, started)
    assert isinstance(checked.body, IterationStarted)
    assert checked.body.project_id == "p1"
    assert checked.key == "i7"
