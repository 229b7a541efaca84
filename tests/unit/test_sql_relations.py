"""The sandbox's `metrics` relation over uncompacted points: only the columns a statement
reads are copied out of the store; the rest read as typed NULLs, never as buffers of
millions of nulls allocated for every statement."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.services.query.sql_relations import SCAN_ORDER, _define_metrics, hot_points


def _series() -> pa.Table:
    return pa.table(
        {
            "series": pa.array([0, 1], pa.int32()),
            "iteration_id": ["it-a", "it-b"],
            "key": ["loss", "acc"],
            "group": ["", "val"],
        }
    )


def test_hot_points_carry_only_the_columns_read() -> None:
    seq_only = pa.table({"seq": pa.array(np.arange(5), pa.int32())})
    assert hot_points(_series(), seq_only).column_names == ["seq"]
    named = pa.table(
        {"series": pa.array([1, 0], pa.int32()), "value": [0.5, 1.5], "seq": pa.array([1, 2])}
    )
    got = hot_points(_series(), named)
    assert got.column_names == ["seq", "iteration_id", "key", "value", "group"]
    assert got.column("key").to_pylist() == ["acc", "loss"]


def test_metrics_reads_missing_hot_columns_as_typed_nulls() -> None:
    files = SCAN_ORDER.empty_table()
    hot = hot_points(
        _series(), pa.table({"seq": pa.array([7, 8], pa.int32()), "value": [1.0, 2.0]})
    )
    cursor = duckdb.connect()
    _define_metrics(cursor, files, hot)
    types = dict(
        cursor.execute("SELECT column_name, column_type FROM (DESCRIBE metrics)").fetchall()
    )
    assert types == {
        "iteration_id": "VARCHAR",
        "key": "VARCHAR",
        "step": "BIGINT",
        "value": "DOUBLE",
        "recorded_at": "TIMESTAMP",
        "client_time": "TIMESTAMP",
        "group": "VARCHAR",
        "partition": "INTEGER",
        "offset": "BIGINT",
        "seq": "INTEGER",
    }
    rows = cursor.execute("SELECT count(*), sum(value), count(step), count(key) FROM metrics")
    assert rows.fetchall() == [(2, 3.0, 0, 0)]
