"""The read models the web page adds: the runs table by blocks of columns, and series
within a step window downsampled to a width."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import deardiary as dd
from deardiary.projections.queries import metric_series, runs_table, series_window
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import MetricsLogged
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


def test_many_series_answer_what_each_series_alone_answers(tmp_path: Path) -> None:
    """`many` (the page's charts, one read for all) against the per-series reads: long
    series from tiles with uncompacted points beside, a short one, a group as its own
    series, step windows, and widths below and above the tiles."""
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    ids = []
    for r in range(3):
        with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
            for step in range(0, 6000, 3):
                it.log_metric("loss", ((step * 7919 + r) % 1000) / 1000, step=step)
            if r == 1:
                it.log_metric("loss", 0.25, step=3, group="val")
                it.log_metric("acc", 0.5, step=0)
            ids.append(it.id)
    c.flush()
    c.close()
    with EmbeddedStore(tmp_path / "data", hot_points_limit=2500) as store:
        store.catch_up()
        store.store.compact()  # tiles for what was logged so far ...
        more = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool2")
        for it_id in ids[:2]:  # ... and points beside them, not compacted yet
            more.buffer.emit(MetricsLogged.from_points(it_id, ["loss"], [2.0], [6001], [0]))
        more.flush()
        more.close()
        store.catch_up()
        assert store.store.hot_points() == 2
        conn = store.store.reader()
        for max_points, window in ((50, None), (400, None), (5000, None), (60, (300, 4200))):
            lo, hi = window or (None, None)
            got = series_window.many(
                conn, [*ids, "nobody"], ["loss", "acc"], [], lo, hi, max_points
            )
            expected = [
                metric_series.labelled(
                    series_window.window(conn, it, key, lo, hi, max_points, group), it, key, group
                )
                for it in ids
                for key, group in (("loss", ""), ("loss", "val"), ("acc", ""))
            ]
            want = pa.concat_tables(t for t in expected if t.num_rows)
            assert got.equals(want), (max_points, window)
            assert got.num_rows > 0
        only_val = series_window.many(conn, ids, ["loss"], ["val"], None, None, 100)
        assert set(only_val["group"].to_pylist()) == {"val"} and only_val.num_rows == 1
        conn.close()


def test_many_from_tiles_picks_the_points_each_series_alone_picks(tmp_path: Path) -> None:
    """The tile path of `many` (every series' buckets at once) against `window` series by
    series where the choice is delicate: NaN beside numbers (a bucket's max), buckets of
    NaN alone, equal values (ties to the lowest step), and two groups of one key."""
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    ids = []
    for r in range(3):
        with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
            for step in range(0, 9000, 3):
                it.log_metric("loss", float((step // 7 + r) % 5), step=step)  # many ties
                it.log_metric("loss", ((step * 31 + r) % 97) / 97, step=step, group="val")
            if r == 2:  # NaN beside numbers, then buckets of NaN alone
                for step in [*range(1, 900, 3), *range(9002, 10800, 3)]:
                    it.log_metric("loss", float("nan"), step=step)
            ids.append(it.id)
    c.flush()
    c.close()
    with EmbeddedStore(tmp_path / "data") as store:
        store.catch_up()
        store.store.compact()
        conn = store.store.reader()
        for max_points in (20, 40, 60):
            got = series_window.many(conn, ids, ["loss"], [], None, None, max_points)
            want = pa.concat_tables(
                metric_series.labelled(
                    series_window.window(conn, it, "loss", None, None, max_points, g), it, "loss", g
                )
                for it in ids
                for g in ("", "val")
            )
            assert _nan_marked(got).equals(_nan_marked(want)), max_points
            assert np.isnan(got["value"].to_numpy()).any(), "a bucket's NaN is answered"
        conn.close()


def _nan_marked(table: pa.Table) -> pa.Table:
    """NaN values as a number, so that tables compare equal where both have NaN."""
    value = np.nan_to_num(table["value"].to_numpy(), nan=-12345.0)
    return table.set_column(table.schema.get_field_index("value"), "value", pa.array(value))


def test_min_max_matches_a_plain_reference() -> None:
    rnd = np.random.default_rng(7)
    for _ in range(50):
        n = int(rnd.integers(3, 400))
        steps = np.sort(rnd.integers(0, 900, n))
        values = rnd.choice([0.0, -0.0, 1.0, 2.0, -3.0, np.inf], n)
        values[rnd.random(n) < 0.2] = rnd.random() * 5
        max_points = int(rnd.integers(2, 40))
        points = pa.table({"step": steps, "value": values})
        got = series_window.min_max(points, max_points)
        buckets = max(1, max_points // 2)
        lo, hi = int(steps[0]), int(steps[-1])
        kept: set[int] = set()
        by: dict[int, list[int]] = {}
        for i, s in enumerate(steps):
            by.setdefault((int(s) - lo) * buckets // (hi - lo + 1), []).append(i)
        for rows in by.values():  # first (step order) holding the min, and the max
            kept.add(min(rows, key=lambda i: (values[i], i)))
            kept.add(min(rows, key=lambda i: (-values[i], i)))
        assert sorted(got["step"].to_pylist()) == sorted(int(steps[i]) for i in kept)
        assert got.num_rows == len(kept) <= max_points


def test_a_spike_beside_a_nan_shows_whole_and_zoomed(tmp_path: Path) -> None:
    """A bucket's max is its highest number, never a NaN beside it: from the uncompacted
    points, from the tiles (the whole series), and in a zoomed window alike."""
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
        for step in range(20_000):
            value = {10_000: 9.0, 10_001: float("nan")}.get(step, 1.0)
            it.log_metric("loss", value, step=step)
    c.flush()
    c.close()
    with EmbeddedStore(tmp_path / "data") as store:
        store.catch_up()
        for compacted in (False, True):
            if compacted:
                store.store.compact()
            conn = store.store.reader()
            for lo, hi in ((None, None), (0, 19_999), (9_000, 11_000)):
                got = series_window.window(conn, it.id, "loss", lo, hi, 100, "")
                assert 9.0 in got["value"].to_pylist(), (compacted, lo, hi)
            conn.close()
