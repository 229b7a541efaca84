"""Lifecycle (issue 14): LOST is filterable -- a RUNNING iteration whose heartbeats stopped
matches `status = 'LOST'` (and no longer 'RUNNING') -- and experiments end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deardiary.projections.draft import ts
from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.queries import iterations, runs_table
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas import ids
from deardiary.schemas.events import (
    ExperimentStatus,
    ExperimentStatusChanged,
    IterationEnded,
    IterationStarted,
    IterationStatus,
)
from tests.builders import T0, records, sweep_start

PID = ids.project_id("proj")
EID = ids.experiment_id(PID, "exp")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProjectionStore]:
    s = DuckDBProjectionStore(tmp_path / "p")
    events = [
        *sweep_start(),  # it-1: RUNNING, its last heartbeat at T0 + 2 s
        IterationStarted(iteration_id="it-2", experiment_id=EID, project_id=PID, name="it-2"),
        IterationStarted(iteration_id="it-3", experiment_id=EID, project_id=PID, name="it-3"),
        IterationEnded(iteration_id="it-3", status=IterationStatus.SUCCEEDED),
        ExperimentStatusChanged(experiment_id=EID, status=ExperimentStatus.COMPLETED),
    ]
    batch = records(events)
    s.apply(fold(s.load_prior(lookups_for(batch)), batch))
    yield s
    s.close()


def _found(store: DuckDBProjectionStore, expression: str, lost_before: datetime) -> list[str]:
    page = iterations.search_iterations(
        store.reader(),
        now=lost_before,
        lost_before=lost_before,
        filter_expression=expression,
        order_by="name",
    )
    return [str(i) for i in page.items["iteration_id"].to_pylist()]


def test_lost_is_filterable_and_running_is_not_lost(store: DuckDBProjectionStore) -> None:
    # heartbeats: it-1 at T0 + 2 s, it-2 at T0 + 3 s; "lost" means older than the bound
    between = ts(T0) + timedelta(seconds=2.5)
    assert _found(store, "status = 'LOST'", between) == ["it-1"]
    assert _found(store, "status = 'lost'", between) == ["it-1"]
    assert _found(store, "status = 'RUNNING'", between) == ["it-2"]
    assert _found(store, "status IN ('LOST', 'SUCCEEDED')", between) == ["it-1", "it-3"]
    assert _found(store, "status != 'LOST'", between) == ["it-2", "it-3"]
    before_all = ts(T0)
    assert _found(store, "status = 'LOST'", before_all) == []
    table = runs_table.runs_table(
        store.reader(),
        EID,
        [],
        now=between,
        lost_before=between,
        filter_expression="status = 'LOST'",
    )
    assert table["iteration_id"].to_pylist() == ["it-1"]


def test_an_experiment_ends_with_its_status(store: DuckDBProjectionStore) -> None:
    row = (
        store.reader()
        .execute("SELECT status, end_date FROM experiments WHERE experiment_id = ?", [EID])
        .fetchall()
    )
    assert row == [("COMPLETED", ts(T0) + timedelta(seconds=6))]  # its log time
