"""Metric groups (issue 14): a series is (iteration, key, group). A validation `loss`
(group "val") has its own steps and summary, apart from the training `loss`, in every
read: history (hot and compacted, raw and from tiles), compare, leaderboard, best,
running best, snapshot, metric names, summaries, the runs table and the filter language."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.queries import (
    iterations,
    leaderboard,
    metric_series,
    runs_table,
    series_window,
)
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas import ids
from deardiary.schemas.events import IterationStarted
from tests.builders import metrics, records, sweep_start

PID = ids.project_id("proj")
EID = ids.experiment_id(PID, "exp")
NOW = datetime(2030, 1, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProjectionStore]:
    s = DuckDBProjectionStore(tmp_path / "p", hot_points_limit=10**9)
    events = [
        *sweep_start(),
        IterationStarted(iteration_id="it-2", experiment_id=EID, project_id=PID, name="it-2"),
        # training loss: steps 0..4 (automatic), validation loss: its own steps 0, 1
        metrics("it-1", [("loss", 1.0 / (s + 1), -1) for s in range(5)]),
        metrics("it-1", [("loss", 0.9, -1), ("loss", 0.7, -1)], group="val"),
        metrics("it-2", [("loss", 0.5, -1), ("loss", 0.4, -1)]),
        metrics("it-2", [("loss", 0.3, -1)], group="val"),
    ]
    batch = records(events)
    s.apply(fold(s.load_prior(lookups_for(batch)), batch))
    yield s
    s.close()


def _pairs(table: object) -> list[tuple[int, float]]:
    rows = table.to_pylist()  # type: ignore[attr-defined]
    return [(r["step"], r["value"]) for r in rows]


def test_each_group_has_its_own_steps_and_summary(store: DuckDBProjectionStore) -> None:
    c = store.reader()
    rows = c.execute(
        'SELECT "group", key, count, first_step, last_step, "last", "min"'
        " FROM last_metrics WHERE iteration_id = 'it-1' ORDER BY \"group\""
    ).fetchall()
    assert rows == [("", "loss", 5, 0, 4, 0.2, 0.2), ("val", "loss", 2, 0, 1, 0.7, 0.7)]
    summaries = iterations.iteration_metric_summaries(c, "it-1")
    assert summaries["group"].to_pylist() == ["", "val"]


@pytest.mark.parametrize("compacted", [False, True])
def test_history_and_compare_per_group(store: DuckDBProjectionStore, compacted: bool) -> None:
    if compacted:
        store.compact()
    c = store.reader()
    assert _pairs(metric_series.history(c, "it-1", "loss", group="val")) == [(0, 0.9), (1, 0.7)]
    assert len(metric_series.history(c, "it-1", "loss")) == 5
    downsampled = metric_series.downsampled(c, "it-1", "loss", 2, group="val")
    assert _pairs(downsampled) == [(0, 0.9), (1, 0.7)]
    window = series_window.window(c, "it-1", "loss", 1, None, None, group="val")
    assert _pairs(window) == [(1, 0.7)]
    assert window.column_names == ["step", "value", "recorded_at", "client_time"]
    compared = series_window.compare_window(c, ["it-1", "it-2"], ["loss"], None, None, 100, "val")
    assert [(r["iteration_id"], r["group"], r["value"]) for r in compared.to_pylist()] == [
        ("it-1", "val", 0.9),
        ("it-1", "val", 0.7),
        ("it-2", "val", 0.3),
    ]


def test_rankings_per_group(store: DuckDBProjectionStore) -> None:
    c = store.reader()
    train = leaderboard.summary(c, EID, "loss", "min")
    val = leaderboard.summary(c, EID, "loss", "min", group="val")
    assert train["iteration_id"].to_pylist() == ["it-1", "it-2"]  # 0.2 < 0.4
    assert val["iteration_id"].to_pylist() == ["it-2", "it-1"]  # 0.3 < 0.7
    assert leaderboard.best(c, EID, "loss", group="val")["value"].to_pylist() == [0.3]
    assert leaderboard.best(c, EID, "loss", group="nope").num_rows == 0
    best = leaderboard.running_best(c, EID, "loss", group="val")
    assert best["value"].to_pylist() == [0.9, 0.7, 0.3]
    snap = metric_series.at_step(c, EID, "loss", 1, group="val")
    assert snap["value"].to_pylist() == [0.7]
    names = metric_series.metric_names(c, EID).to_pylist()
    assert [(n["key"], n["group"], n["iterations"]) for n in names] == [
        ("loss", "", 2),
        ("loss", "val", 2),
    ]


def test_filters_order_and_runs_table_per_group(store: DuckDBProjectionStore) -> None:
    c = store.reader()

    def found(expression: str, order: str = "") -> list[str]:
        page = iterations.search_iterations(
            c, now=NOW, lost_before=NOW, filter_expression=expression, order_by=order
        )
        return [str(i) for i in page.items["iteration_id"].to_pylist()]

    assert found("metrics.loss < 0.3") == ["it-1"]  # the training series, as before
    assert found("metrics@val.loss < 0.5") == ["it-2"]
    assert found("metrics@val.loss.count = 2") == ["it-1"]
    assert found("metrics@`val`.loss.max > 0.8") == ["it-1"]
    assert found("metrics@nope.loss IS NULL", "name") == ["it-1", "it-2"]
    assert found("", "metrics@val.loss ASC") == ["it-2", "it-1"]
    assert found("", "metrics.loss ASC") == ["it-1", "it-2"]
    page = iterations.search_iterations(c, now=NOW, lost_before=NOW, order_by="name")
    first = page.items.to_pylist()[0]
    assert first["metrics"] == '{"loss":0.2}'
    assert first["group_metrics"] == '{"val":{"loss":0.7}}'
    table = runs_table.runs_table(
        c, EID, ["metrics.loss.last", "metrics@val.loss.min"], now=NOW, lost_before=NOW
    )
    assert table["metrics.loss.last"].to_pylist() == [0.2, 0.4]
    assert table["metrics@val.loss.min"].to_pylist() == [0.7, 0.3]
    columns = runs_table.columns(c, EID).to_pylist()
    assert [(r["kind"], r["key"], r["group"]) for r in columns if r["kind"] == "metric"] == [
        ("metric", "loss", ""),
        ("metric", "loss", "val"),
    ]
    assert math.isclose(table["metrics@val.loss.min"].to_pylist()[1], 0.3)
