"""The read models the web page adds: the runs table by blocks of columns, and series
within a step window downsampled to a width."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import deardiary as dd
from deardiary.projections.queries import runs_table, series_window
from deardiary.schemas.errors import InvalidArgument
from deardiary.services.embedded import EmbeddedStore


def test_runs_table_blocks_line_up_and_columns_list_what_exists(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    for i, lr in enumerate((0.1, 0.01, 0.001)):
        with c.start_iteration(
            project="p",
            experiment="e",
            name=f"t{i}",
            params={"lr": lr},
            tags={"team.a": "x"} if i == 1 else {},
            capture_env=False,
        ) as it:
            for step in range(5):
                it.log_metric("loss", lr * (5 - step), step=step)
    c.flush()
    c.close()
    with EmbeddedStore(tmp_path / "data") as store:
        store.catch_up()
        conn = store.store.reader()
        now = datetime(2100, 1, 1)
        base = runs_table.runs_table(conn, it.experiment_id, [], now=now, lost_before=now)
        assert sorted(base.column("name").to_pylist()) == ["t0", "t1", "t2"]
        names = dict(
            zip(
                base.column("iteration_id").to_pylist(),
                base.column("name").to_pylist(),
                strict=True,
            )
        )
        block = runs_table.runs_table(
            conn,
            it.experiment_id,
            ["metrics.loss.min", "params.lr", "tags.team.a"],
            now=now,
            lost_before=now,
            base=False,
            filter_expression="params.lr < 0.05",
        )
        assert block.column_names == [
            "iteration_id",
            "metrics.loss.min",
            "params.lr",
            "tags.team.a",
        ]
        rows = {names[r["iteration_id"]]: r for r in block.to_pylist()}
        assert set(rows) == {"t1", "t2"}
        assert rows["t1"]["params.lr"] == "0.01" and rows["t2"]["params.lr"] == "0.001"
        assert rows["t1"]["metrics.loss.min"] == pytest.approx(0.01)
        assert (rows["t1"]["tags.team.a"], rows["t2"]["tags.team.a"]) == ("x", None)
        every = runs_table.runs_table(
            conn, it.experiment_id, ["params.lr"], now=now, lost_before=now
        )
        assert every.column("iteration_id").to_pylist() == base.column("iteration_id").to_pylist()
        kinds = runs_table.columns(conn, it.experiment_id).to_pylist()
        assert [(k["kind"], k["key"], k["iterations"]) for k in kinds] == [
            ("metric", "loss", 3),
            ("param", "lr", 3),
            ("tag", "team.a", 1),
        ]
        with pytest.raises(InvalidArgument):
            runs_table.runs_table(
                conn, it.experiment_id, ["metrics.loss.p99"], now=now, lost_before=now
            )
        conn.close()


def test_min_max_keeps_each_buckets_extremes_within_the_bound() -> None:
    steps = np.arange(1000)
    values = np.sin(steps / 30.0)
    values[500] = 9.0  # a spike survives
    values[501] = np.nan
    points = pa.table(
        {"step": steps, "value": values, "recorded_at": pa.array(steps, pa.timestamp("us"))}
    )
    out = series_window.min_max(points, 100)
    assert out.num_rows <= 100
    assert 9.0 in out.column("value").to_pylist()
    assert out.column("step").to_pylist() == sorted(out.column("step").to_pylist())
    assert min(out.column("value").to_pylist()) == pytest.approx(values[~np.isnan(values)].min())
