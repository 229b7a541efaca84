"""An iteration may record that it used a model version (`ModelVersionUsed`) only if the
version exists and its writer may read it: otherwise another project's model page would
list the writer's run, and a made-up id would dangle. Each refusal appends nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deardiary.schemas import ids
from deardiary.schemas.events import ModelVersionUsed
from tests.faults.auth_world import AuthWorld, auth_world, post_events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("model-use")) as built:
        yield built


def _use(world: AuthWorld, version_id: str) -> ModelVersionUsed:
    """rita's own iteration (project C) using `version_id`."""
    return ModelVersionUsed(iteration_id=world.c.ids["iteration_id"], model_version_id=version_id)


def _code(response_json: dict[str, dict[str, str]]) -> str:
    return response_json["error"]["code"]


def test_a_version_of_an_unreadable_project_is_refused(world: AuthWorld) -> None:
    before = world.end_offsets()
    r = post_events(world.url, world.rita, _use(world, world.b.ids["model_version_id"]))
    assert r.status_code == 403, r.text
    assert _code(r.json()) == "PERMISSION_DENIED"
    assert world.b.project not in r.text and world.b.ids["project_id"] not in r.text
    assert world.end_offsets() == before


def test_a_version_that_does_not_exist_is_not_found(world: AuthWorld) -> None:
    before = world.end_offsets()
    for headers in (world.rita, world.admin):
        r = post_events(world.url, headers, _use(world, ids.new_id()))
        assert r.status_code == 404, r.text
        assert _code(r.json()) == "NOT_FOUND"
    assert world.end_offsets() == before


def test_a_readable_version_may_be_used(world: AuthWorld) -> None:
    r = post_events(world.url, world.rita, _use(world, world.a.ids["model_version_id"]))
    assert r.status_code == 200, r.text
