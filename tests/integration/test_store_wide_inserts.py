"""Which way a batch's rows go in (store.FEW_VALUES): as statement parameters only while
they are a few dozen values or fewer -- a param, a history row, one or two iterations --
and as an Arrow table past that: a sweep step's new iterations (22 columns each) cost
~50 us a parameter bound, 4.3-4.9 ms for 8 rows against 2.1-2.5 as Arrow. Both ways
store the same rows (test_store_few_rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from deardiary.projections.store import FEW_KEYS, FEW_VALUES, DuckDBProjectionStore
from deardiary.schemas.events import ParamsLogged
from deardiary.services.embedded import EmbeddedStore
from tests.builders import append_to_folder, sweep_start


def _watch(
    store: DuckDBProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str, int]]:
    """(way, table, values) of every insert the store makes from here on."""
    seen: list[tuple[str, str, int]] = []
    few, append = store._insert_few, store._append

    def as_values(table: str, data: pa.Table, replace: bool) -> None:
        seen.append(("values", table, data.num_rows * data.num_columns))
        few(table, data, replace)

    def as_arrow(table: str, data: pa.Table) -> None:
        seen.append(("arrow", table, data.num_rows * data.num_columns))
        append(table, data)

    monkeypatch.setattr(store, "_insert_few", as_values)
    monkeypatch.setattr(store, "_append", as_arrow)
    return seen


def test_a_steps_new_iterations_go_in_as_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trials = FEW_KEYS - 1  # few enough rows for parameters, too many values
    events: list[Any] = sweep_start(iteration="it-0")[:2]
    for n in range(trials):
        events.append(sweep_start(iteration=f"it-{n}")[-1])
    append_to_folder(tmp_path, events)
    with EmbeddedStore(tmp_path) as store:
        assert store.projector is not None
        seen = _watch(store.store, monkeypatch)
        store.catch_up()  # one batch
        stored = store.store.conn.execute("SELECT count(*) FROM iterations").fetchall()
    assert stored == [(trials,)]
    assert ("arrow", "iterations") in {(way, table) for way, table, _ in seen}
    assert all(n <= FEW_VALUES for way, _, n in seen if way == "values"), seen


def test_a_lone_param_still_goes_in_as_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_to_folder(tmp_path, sweep_start(iteration="it-0"))
    with EmbeddedStore(tmp_path) as store:
        assert store.projector is not None
        store.catch_up()
        append_to_folder(tmp_path, [ParamsLogged(iteration_id="it-0", params={"lr": "0.1"})])
        seen = _watch(store.store, monkeypatch)
        store.catch_up()
        stored = store.store.conn.execute("SELECT key, value FROM params").fetchall()
    assert stored == [("lr", "0.1")]
    assert ("values", "params") in {(way, table) for way, table, _ in seen}, seen
