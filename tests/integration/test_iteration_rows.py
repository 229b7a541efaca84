"""Iteration reads: any page of a search, in any order, is that slice of the whole ordered
result, with the same rows `get_iteration` gives (params of every section, metrics of
every group, NaN and infinities as their JSON names)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

import deardiary as dd
from deardiary.projections.queries.iterations import get_iteration, search_iterations
from deardiary.schemas.errors import NotFound
from deardiary.services.embedded import EmbeddedStore

NOW = datetime.now(UTC)
LOST = NOW - timedelta(minutes=5)
ORDERS = ["", "metrics.loss ASC", "metrics.loss.max DESC", "params.lr DESC", "name ASC"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedStore:
    data = tmp_path_factory.mktemp("rows")
    client = dd.connect(str(data))
    for n in range(23):
        it = client.start_iteration(
            project="p", experiment=f"e{n % 2}", name=f"run-{n:02d}", capture_env=False
        )
        it.log_params({"lr": str(n % 4), "depth": n})
        if n % 3 == 0:
            it.log_params({"lr": "sectioned"}, section="opt")
        if n != 5:  # one run has no metrics at all
            it.log_metric("loss", [1.0 / (n + 1), math.nan, math.inf][n % 3], 0)
            it.log_metric("loss", float(n % 5), 1, group="val")
            it.log_metric("acc", n / 23, 0, group="val")
        if n % 4 == 0:
            it.end()
    client.close()
    opened = EmbeddedStore(data)
    opened.catch_up()
    return opened


@pytest.mark.parametrize("order", ORDERS)
def test_pages_are_slices_of_the_whole_ordered_result(store: EmbeddedStore, order: str) -> None:
    conn = store.store.reader()
    whole = search_iterations(conn, now=NOW, lost_before=LOST, order_by=order, limit=1000)
    assert whole.total == 23 and whole.items.num_rows == 23
    ids = whole.items.column("iteration_id").to_pylist()
    for limit, offset in ((7, 0), (7, 7), (7, 14), (7, 21), (5, 22), (3, 23), (1, 30)):
        page = search_iterations(
            conn, now=NOW, lost_before=LOST, order_by=order, limit=limit, offset=offset
        )
        assert page.total == 23
        assert page.items.column("iteration_id").to_pylist() == ids[offset : offset + limit]
        assert page.items.to_pylist() == whole.items.to_pylist()[offset : offset + limit]


def test_a_search_row_is_the_iteration_row(store: EmbeddedStore) -> None:
    conn = store.store.reader()
    rows = search_iterations(
        conn, now=NOW, lost_before=LOST, filter_expression="params.depth > 2", limit=1000
    ).items.to_pylist()
    assert len(rows) == 20
    for row in rows:
        assert get_iteration(conn, row["iteration_id"], now=NOW, lost_before=LOST).to_pylist() == [
            row
        ]
    by_name = {r["name"]: r for r in rows}
    three = by_name["run-03"]
    assert json.loads(three["params"]) == {"lr": "3", "depth": "3", "opt/lr": "sectioned"}
    assert json.loads(three["metrics"]) == {"loss": 0.25}
    assert json.loads(three["group_metrics"]) == {"val": {"loss": 3.0, "acc": 3 / 23}}
    assert json.loads(by_name["run-04"]["metrics"]) == {"loss": "NaN"}
    assert json.loads(by_name["run-05"]["metrics"]) == {}
    assert json.loads(by_name["run-05"]["group_metrics"]) == {}
    assert json.loads(by_name["run-08"]["metrics"]) == {"loss": "Infinity"}


def test_a_missing_iteration_is_not_found(store: EmbeddedStore) -> None:
    with pytest.raises(NotFound):
        get_iteration(store.store.reader(), "no-such-run", now=NOW, lost_before=LOST)
