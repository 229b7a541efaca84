"""The store keeps the committed rows of last_metrics in memory (CACHED_TABLES): a batch of
points of known series reads its summaries without a query, and what it folds is what a
store reading them from its tables folds -- across a refused batch and a reopen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import Key, Row
from deardiary.services.projector import apply_or_park
from tests.builders import metrics, records, sweep_start


def _summaries(store: DuckDBProjectionStore) -> list[tuple[Any, ...]]:
    conn = store.reader()
    try:
        return conn.sql('SELECT * FROM last_metrics ORDER BY iteration_id, key, "group"').fetchall()
    finally:
        conn.close()


def test_known_series_are_summarised_from_memory_as_from_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = [
        sweep_start(),
        [metrics("it-1", [("loss", 3.0, -1), ("acc", 0.1, 0)])],
        [metrics("it-1", [("loss", float("nan"), -1), ("loss", -0.0, 7)])],
        [metrics("it-1", [("loss", 1.0, -1), ("acc", 0.9, -1)], group="val")],
        [metrics("it-1", [("loss", 0.5, -1), ("acc", float("inf"), 3)])],
    ]
    cached = DuckDBProjectionStore(tmp_path / "cached")
    plain = DuckDBProjectionStore(tmp_path / "plain")
    plain._cached.clear()  # reads every row from its tables, as before the cache
    asked: list[str] = []
    rows_by_key = cached._rows_by_key

    def spy(table: str, keys: set[Key]) -> dict[Key, Row]:
        asked.append(table)
        return rows_by_key(table, keys)

    monkeypatch.setattr(cached, "_rows_by_key", spy)
    offset = 0
    for n, events in enumerate(batches):
        batch = records(events, start=offset)
        offset += len(batch)
        if n == 4:  # the store refuses this batch once: nothing of it may be remembered
            insert_points = cached._insert_points

            def refuse(*args: Any) -> None:
                raise RuntimeError("disk full")

            monkeypatch.setattr(cached, "_insert_points", refuse)
            with pytest.raises(RuntimeError):
                cached.apply(fold(cached.load_prior(lookups_for(batch)), batch))
            monkeypatch.setattr(cached, "_insert_points", insert_points)
        asked.clear()
        apply_or_park(cached, batch)
        apply_or_park(plain, batch)
        if n == 2:  # series known since the batch before: no query for their summaries
            assert "last_metrics" not in asked
        assert _summaries(cached) == _summaries(plain)
    cached.close()
    reopened = DuckDBProjectionStore(tmp_path / "cached")
    last = records([metrics("it-1", [("loss", 9.0, -1)])], start=offset)
    apply_or_park(reopened, last)
    apply_or_park(plain, last)
    assert _summaries(reopened) == _summaries(plain)
    reopened.close()
    plain.close()
