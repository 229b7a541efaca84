"""search_runs' rendered runs are kept across states of the projections: the state a read's
snapshot shows is told by the offsets committed with it, and a newer state keeps the runs
no batch in between wrote (projections/changes.py), or nothing where that is not known
(services/mlflow_api/run_cache.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.projections.changes import Changes, touched_by
from deardiary.projections.queries.snapshot import snapshot
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import Writes
from deardiary.schemas import ids
from deardiary.schemas.events import (
    Event,
    ExperimentCreated,
    IterationEnded,
    IterationStarted,
    IterationStatus,
    ParamsLogged,
)
from deardiary.services.mlflow_api import reads
from deardiary.services.mlflow_api.run_cache import RUN_TABLES, RenderedRuns, state_version
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


def test_a_newer_state_keeps_the_runs_no_batch_in_between_wrote(
    store: DuckDBProjectionStore,
) -> None:
    changes = Changes()
    store.on_commit = changes.record
    pid = ids.project_id("proj")
    eid = ids.experiment_id(pid, "exp")
    started = IterationStarted(iteration_id="it-2", experiment_id=eid, project_id=pid, name="b")
    apply_or_park(store, records([*sweep_start(), started]))
    reader = store.reader()
    runs = RenderedRuns(changes=changes)
    v0 = state_version(reader)
    assert v0 == ((0, 4),) and runs.held(v0) == 0
    runs.put(v0, {"it-1": b"1", "it-2": b"2"})

    def apply(event: Event, at: int) -> tuple[tuple[int, int], ...]:
        apply_or_park(store, records([event], start=at))
        version = state_version(reader)
        assert version is not None
        return version

    v1 = apply(metrics("it-2", [("loss", 0.5, 0)]), 4)  # last_metrics of it-2 only
    assert changes.changed(v0, v1, RUN_TABLES) == {"it-2"}
    assert runs.held(v1) == 1 and runs.get(v1, ["it-1", "it-2"]) == {"it-1": b"1"}
    runs.put(v1, {"it-2": b"2b"})
    v2 = apply(ExperimentCreated(experiment_id="e-2", project_id=pid, name="other"), 5)
    assert changes.changed(v1, v2, RUN_TABLES) == set()
    assert changes.changed(v1, v2, ["experiments"]) is None  # rows without an iteration id
    v3 = apply(ParamsLogged(iteration_id="it-1", params={"lr": "0.1"}), 6)
    assert runs.held(v3) == 1 and runs.get(v3, ["it-1", "it-2"]) == {"it-2": b"2b"}
    v4 = apply(IterationEnded(iteration_id="it-2", status=IterationStatus.FAILED), 7)
    assert changes.changed(v0, v4, RUN_TABLES) == {"it-1", "it-2"}  # across four batches
    assert changes.changed(v4, v0, RUN_TABLES) is None  # backwards: no such batches
    assert runs.held(v4) == 0
    runs.put(v4, {"it-1": b"1c", "it-2": b"2c"})
    store.on_commit = None  # a batch the ring never sees: nothing can be vouched for
    v5 = apply(metrics("it-1", [("acc", 0.5, 0)]), 8)
    assert changes.changed(v4, v5, RUN_TABLES) is None and runs.held(v5) == 0


def test_the_ring_forgets_its_oldest_batches_and_rows_without_an_iteration() -> None:
    changes = Changes(capacity=2)
    state = [((0, n),) for n in range(4)]
    for n in range(3):
        rows = [{"iteration_id": f"it-{n}", "key": "k"}]
        changes.record({0: n}, {0: n + 1}, Writes(upserts={"params": rows}))
    assert changes.changed(state[1], state[3], ["params"]) == {"it-1", "it-2"}
    assert changes.changed(state[0], state[3], ["params"]) is None  # forgotten
    assert changes.changed(state[3], state[3], ["params"]) == set()
    few = Changes(max_ids=3)  # ids held in all: the oldest batches go first
    for n in range(3):
        rows = [{"iteration_id": f"it-{n}-{i}"} for i in range(2)]
        few.record({0: n}, {0: n + 1}, Writes(upserts={"iterations": rows}))
    assert len(few) == 1 and few.changed(state[2], state[3], ["iterations"]) == {"it-2-0", "it-2-1"}
    assert touched_by(Writes(upserts={"params": [{"key": "k"}]})) == {"params": None}
    assert touched_by(Writes(inserts={"iterations": [{"iteration_id": "x"}]})) == {
        "iterations": frozenset({"x"})
    }


def test_the_tables_watched_are_those_a_rendered_run_is_read_from() -> None:
    """A table the rendering reads but RUN_TABLES misses would keep stale runs."""
    read = set()
    for sql in (reads.RUN_SELECT, reads.RUN_DATA_SQL, reads.RUN_DATA_ONE_SQL):
        read |= set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", sql, flags=re.IGNORECASE))
    assert read == set(RUN_TABLES)
