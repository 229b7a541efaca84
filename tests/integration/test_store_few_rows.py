"""A batch of a few rows (one small request: an MLflow log_param is a batch of one event)
is written and looked up with its keys and values as statement parameters
(store.FEW_KEYS), a larger one through list parameters and a registered Arrow table: both
ways must store exactly the same rows -- -0.0, NaN, NULLs, JSON and timestamps alike."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import duckdb

from deardiary.projections.store import FEW_KEYS
from deardiary.schemas.events import (
    EntityKind,
    IterationEnded,
    IterationHeartbeat,
    IterationStatus,
    ParamsLogged,
    TagsSet,
)
from deardiary.services.embedded import EmbeddedStore
from tests.builders import append_to_folder, metrics, sweep_start

TABLES = {
    "iterations": "iteration_id",
    "params": "iteration_id, section, key",
    "last_metrics": 'iteration_id, key, "group"',
    "events": '"partition", "offset"',
    "applied_events": "event_id",
}


def _events(runs: int) -> list[Any]:
    events: list[Any] = sweep_start(iteration="it-0")
    for n in range(runs):
        it = f"it-{n}"
        if n:
            events.append(sweep_start(iteration=it)[-1])
        events += [
            ParamsLogged(iteration_id=it, params={"lr": f"0.{n}", "opt": "adam"}),
            TagsSet(entity=EntityKind.ITERATION, entity_id=it, tags={"group": f"g{n % 3}"}),
            metrics(it, [("loss", -0.0, 0), ("acc", math.nan, 0), ("lr", 1e-300, 0)]),
            metrics(it, [("loss", float(n), 1)]),
            IterationHeartbeat(iteration_id=it),
            ParamsLogged(iteration_id=it, params={"lr": "changed"}),  # refused: write-once
        ]
        if n % 2:
            events.append(IterationEnded(iteration_id=it, status=IterationStatus.FAILED))
    return events


def _dump(store: EmbeddedStore) -> dict[str, str]:
    """Every row of the tables a fold writes, as repr (keeps -0.0 and NaN apart)."""
    conn = store.store.reader()
    try:
        return {
            table: repr(conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall())
            for table, order in TABLES.items()
        }
    finally:
        conn.close()


def test_a_few_rows_and_many_are_stored_alike(tmp_path: Path) -> None:
    append_to_folder(tmp_path / "few", _events(FEW_KEYS + 4))
    (tmp_path / "many").mkdir()
    shutil.copy(tmp_path / "few" / "log.db", tmp_path / "many" / "log.db")
    with EmbeddedStore(tmp_path / "few") as store:
        assert store.projector is not None
        store.projector.max_records = 1  # one event a batch: keys and values as parameters
        store.catch_up()
        few = _dump(store)
    with EmbeddedStore(tmp_path / "many") as store:  # one batch: more than FEW_KEYS rows
        store.catch_up()
        many = _dump(store)
    assert few == many
    assert "-0.0" in few["last_metrics"] and "nan" in few["last_metrics"]
    assert "'changed'" not in few["params"]  # the write-once refusal held both ways


class _Watched:
    """The store's own connection, noting each Arrow table registered on it."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self.registered: list[str] = []

    def register(self, name: str, data: object) -> Any:
        self.registered.append(name)
        return self._conn.register(name, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_one_event_batch_registers_no_arrow_table(tmp_path: Path) -> None:
    append_to_folder(tmp_path, _events(1))
    with EmbeddedStore(tmp_path) as store:
        assert store.projector is not None
        store.catch_up()
        watched = _Watched(store.store.conn)
        store.store.conn = watched  # type: ignore[assignment]
        append_to_folder(
            tmp_path,
            [
                ParamsLogged(iteration_id="it-0", params={"batch": "32"}),
                TagsSet(entity=EntityKind.ITERATION, entity_id="it-0", tags={"team": "a"}),
                IterationHeartbeat(iteration_id="it-0"),
            ],
        )
        store.projector.max_records = 1
        store.catch_up()
        store.store.conn = watched._conn
        rows = _dump(store)
    assert watched.registered == []
    assert "'batch', '32'" in rows["params"] and "team" in rows["iterations"]
