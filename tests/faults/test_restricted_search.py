"""A restricted user's iteration search filtered and ordered by metrics and params: the
joined scans of last_metrics and params (projections/queries/filter.py compile_search)
read the caller's scoped views like every other read, so B's iteration, its param and
its metric never show, whatever the filter or order names (see auth_world.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.faults.auth_world import AuthWorld, auth_world

SEARCHES = [
    ("metrics.loss > 0 OR params.secret IS NOT NULL", "metrics.loss DESC, params.secret"),
    ("NOT metrics.loss < 0", "params.secret DESC"),
    ("params.secret LIKE '%-param-value'", "metrics.loss.max ASC"),
    ("", "metrics.loss ASC"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("restricted-search")) as built:
        yield built


@pytest.mark.parametrize(("expression", "order"), SEARCHES)
def test_filtered_search_shows_only_readable_iterations(
    world: AuthWorld, expression: str, order: str
) -> None:
    params: dict[str, str | int] = {"filter": expression, "order_by": order, "limit": 100}
    url = f"{world.url}/api/v1/iterations"
    admin = httpx.get(url, params=params, headers=world.admin, timeout=60)
    assert admin.status_code == 200, admin.text
    everyone = {t.ids["iteration_id"] for t in (world.a, world.b, world.c)}
    assert {r["iteration_id"] for r in admin.json()["items"]} == everyone  # the filter holds
    rita = httpx.get(url, params=params, headers=world.rita, timeout=60)
    assert rita.status_code == 200, rita.text
    body = rita.json()
    readable = {world.a.ids["iteration_id"], world.c.ids["iteration_id"]}
    assert {r["iteration_id"] for r in body["items"]} == readable
    assert body["total"] == 2
    for secret in world.b.secrets:
        assert secret not in rita.text
