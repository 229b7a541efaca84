"""The store remembers which parent rows exist (rows are never deleted) instead of looking
them up for every batch: a parent missing once must still be looked up again, and one
created later is found, across projector steps and a reopened store."""

from __future__ import annotations

from pathlib import Path

from deardiary.services.embedded import EmbeddedStore
from tests.builders import append_to_folder, metrics, sweep_start


def _state(store: EmbeddedStore) -> tuple[list[object], list[object]]:
    points = store.sql('SELECT iteration_id, key, step FROM metrics ORDER BY "offset"').to_pylist()
    conflicts = store.sql('SELECT kind, entity_id FROM conflicts ORDER BY "offset"').to_pylist()
    return [tuple(p.values()) for p in points], [tuple(c.values()) for c in conflicts]


def test_a_parent_missing_then_created_is_found_and_a_known_one_stays_known(
    tmp_path: Path,
) -> None:
    append_to_folder(
        tmp_path,
        [
            metrics("it-1", [("early", 1.0, 0)]),  # before its iteration exists: refused
            *sweep_start(iteration="it-1"),
            metrics("it-1", [("loss", 1.0, 0)]),  # now it exists
            metrics("it-2", [("loss", 1.0, 0)]),  # never started: refused
            metrics("it-1", [("loss", 2.0, 1)]),  # known: no lookup, still applied
        ],
    )
    with EmbeddedStore(tmp_path) as store:
        assert store.projector is not None
        store.projector.max_records = 1  # one event a step: each lookup on its own
        store.catch_up()
        points, conflicts = _state(store)
    assert points == [("it-1", "loss", 0), ("it-1", "loss", 1)]
    assert conflicts == [("missing_parent", "it-1"), ("missing_parent", "it-2")]
    append_to_folder(
        tmp_path, [metrics("it-1", [("loss", 3.0, 2)]), metrics("it-2", [("x", 1.0, 0)])]
    )
    with EmbeddedStore(tmp_path) as store:  # reopened: nothing remembered, all looked up
        store.catch_up()
        points, conflicts = _state(store)
    assert points[-1] == ("it-1", "loss", 2) and len(points) == 3
    assert conflicts[-1] == ("missing_parent", "it-2") and len(conflicts) == 3
