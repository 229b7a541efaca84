"""A batch the store cannot apply fails with DuckDB's own error, rolls back whole, and
leaves the store able to apply the next batch: the cleanup of the failed transaction
must neither hide the error (DuckDB refuses every statement in an aborted transaction,
unregistering the batch's rows included) nor leave a setting or a name behind."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from deardiary.projections.store import FEW_KEYS, DuckDBProjectionStore
from deardiary.projections.writes import Row, Writes

AT = dt.datetime(2026, 1, 1)


def _params(iteration: str, keys: list[str]) -> list[Row]:
    return [
        {
            "iteration_id": iteration,
            "key": k,
            "value": "1",
            "section": "",
            "logged_at": AT,
            "type": "int",
        }
        for k in keys
    ]


def _count(store: DuckDBProjectionStore) -> int:
    row = store.conn.execute("SELECT count(*) FROM params").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("rows", [FEW_KEYS + 4, 3])
def test_a_failed_batch_raises_its_own_error_and_the_next_one_applies(
    tmp_path: Path, rows: int
) -> None:
    store = DuckDBProjectionStore(tmp_path / "projection")
    try:
        keys = [f"k{n}" for n in range(rows - 1)]
        clash = _params("it-1", [*keys, keys[0]])  # the same key twice: a primary key clash
        with pytest.raises(duckdb.ConstraintException):
            store.apply(Writes(next_offsets={0: 5}, inserts={"params": clash}))
        assert _count(store) == 0
        assert store.next_offsets().get(0) is None  # the offsets rolled back with the rows
        store.apply(Writes(next_offsets={0: 5}, inserts={"params": _params("it-1", keys)}))
        assert _count(store) == len(keys)
        setting = store.conn.execute("SELECT current_setting('preserve_insertion_order')")
        assert setting.fetchone() == (True,)
    finally:
        store.close()
