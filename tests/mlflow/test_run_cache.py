"""search_runs' rendered runs are kept for one state of the projections: the state a read's
snapshot shows is told by the offsets committed with it, and any newer state replaces
what was kept (services/mlflow_api/run_cache.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.projections.queries.snapshot import snapshot
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.services.mlflow_api.run_cache import RenderedRuns, state_version
from deardiary.services.projector import apply_or_park
from tests.builders import metrics, records, sweep_start


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProjectionStore]:
    store = DuckDBProjectionStore(tmp_path / "projections")
    yield store
    store.close()


def test_a_snapshot_tells_the_offsets_of_the_state_it_reads(store: DuckDBProjectionStore) -> None:
    assert state_version(store.reader()) is None  # nothing applied: nothing to key a cache by
    apply_or_park(store, records(sweep_start()))
    reader = store.reader()
    with snapshot(reader):
        before = state_version(reader)
        apply_or_park(store, records([metrics("it-1", [("loss", 0.5, 0)])], start=3))
        # the batch applied meanwhile is not in this snapshot, and neither are its offsets
        assert state_version(reader) == before == ((0, 3),)
        assert reader.execute("SELECT count(*) FROM last_metrics").fetchall() == [(0,)]
    assert state_version(reader) == ((0, 4),)


def test_rendered_runs_are_kept_for_one_state_and_the_newest_wins() -> None:
    runs = RenderedRuns(capacity=6)  # bytes
    old, new = ((0, 5), (1, 2)), ((0, 6), (1, 2))
    assert runs.held(None) is None  # a state nobody can name is never cached
    assert runs.held(old) == 0
    runs.put(old, {"a": b"A", "b": b"B"})
    assert runs.held(old) == 2
    assert runs.get(old, ["b", "c", "a"]) == {"b": b"B", "a": b"A"}
    assert runs.held(new) == 0  # a newer state: what was kept is gone
    assert runs.get(old, ["a"]) == {}
    runs.put(old, {"c": b"stale"})  # rendered from a snapshot older than the state held
    assert runs.held(old) is None and runs.get(new, ["c"]) == {}
    runs.put(new, {"a": b"A2", "b": b"B2", "c": b"C2", "d": b"D2"})
    assert len(runs) == 3  # capacity: the rest is not kept (rendered again when asked)
    assert runs.get(new, "abcd") == {"a": b"A2", "b": b"B2", "c": b"C2"}
    runs.put(new, {"a": b"other"})
    assert runs.get(new, ["a"]) == {"a": b"A2"}
    assert runs.held(((0, 6),)) is None  # not newer (partition 1 went missing): not taken
