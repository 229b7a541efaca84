"""Reads while the store compacts: hot points move into a Parquet segment in one
transaction with the views over them, so a reader -- one statement, or a series read of
several -- sees every point before, during and after, never some of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from deardiary.projections.queries import metric_series
from deardiary.projections.queries.snapshot import snapshot
from deardiary.projections.store import DuckDBProjectionStore
from tests.integration.test_hot_count import _Log, _store


def _counts(store: DuckDBProjectionStore) -> tuple[int, int]:
    reader = store.reader()
    try:
        everything = int(reader.execute("SELECT count(*) FROM metrics").fetchall()[0][0])
        series = metric_series.history(reader, "it-1", "loss").num_rows
        return everything, series
    finally:
        reader.close()


def test_a_reader_during_compaction_sees_every_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, log = _store(tmp_path / "p"), _Log()
    try:
        store.apply(log.batch(40))
        store.compact()  # one segment ...
        store.apply(log.batch(30))  # ... and hot points
        seen: list[tuple[int, int]] = []
        refresh = store._refresh_metrics_view

        def read_then_refresh() -> None:  # a reader comes in just as the views change
            seen.append(_counts(store))
            refresh()
            seen.append(_counts(store))

        monkeypatch.setattr(store, "_refresh_metrics_view", read_then_refresh)
        store.compact()
        assert seen and all(c == (70, 70) for c in seen), seen
        assert _counts(store) == (70, 70)
        assert len(store.segment_paths()) == 2
    finally:
        store.close()


def test_a_series_read_is_one_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """history() reads segments (the files its snapshot lists), then hot points: a
    compaction right after its first statement must not hide the points it moves."""
    store, log = _store(tmp_path / "p"), _Log()
    try:
        store.apply(log.batch(40))
        store.compact()
        store.apply(log.batch(30))
        reader = store.reader()
        real_sql, real_execute = type(reader).sql, type(reader).execute
        calls: list[str] = []

        class Cursor:  # the reader, compacting the store right after its first statement
            def __getattr__(self, name: str) -> object:
                return getattr(reader, name)

            def sql(self, query: str, **kw: object) -> object:
                relation = real_sql(reader, query, **kw)  # type: ignore[arg-type]
                table = relation.to_arrow_table()
                self._after(query)
                return _Done(table)

            def execute(self, query: str, *args: object) -> object:
                result = real_execute(reader, query, *args)
                self._after(query)
                return result

            def _after(self, query: str) -> None:
                calls.append(query)
                if len(calls) == 2 and query.startswith("SELECT"):  # 1st: the BEGIN
                    store.compact()

        try:
            got = metric_series.history(Cursor(), "it-1", "loss")  # type: ignore[arg-type]
        finally:
            reader.close()
        assert len(calls) >= 2, calls
        assert got.num_rows == 70
        assert got["step"].to_pylist() == list(range(70))
    finally:
        store.close()


class _Done:
    def __init__(self, table: object) -> None:
        self.table = table

    def to_arrow_table(self) -> object:
        return self.table


def test_a_read_begun_before_a_merge_still_reads_the_merged_files(tmp_path: Path) -> None:
    """A merge replaces small segments; a read holding the snapshot from before it still
    names them, so they stay on disk for a while (RETIRE_AFTER_S), and a reopened store
    deletes them."""
    store, log = DuckDBProjectionStore(tmp_path / "p", max_small_segments=1), _Log()
    try:
        store.apply(log.batch(10))
        store.compact()
        store.apply(log.batch(10))
        reader = store.reader()
        try:
            with snapshot(reader):
                assert metric_series.history(reader, "it-1", "loss").num_rows == 20
                store.compact()  # the hot points become a segment, then the two are merged
                assert len(store.segment_paths()) == 1
                assert metric_series.history(reader, "it-1", "loss").num_rows == 20
            assert metric_series.history(reader, "it-1", "loss").num_rows == 20
        finally:
            reader.close()
    finally:
        store.close()
    assert len(list((tmp_path / "p" / "segments").glob("seg-*"))) == 3  # kept for readers
    DuckDBProjectionStore(tmp_path / "p").close()
    assert len(list((tmp_path / "p" / "segments").glob("seg-*"))) == 1
