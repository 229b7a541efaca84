"""Registry completion (issue 14): metadata, labels and notes on models and versions from
the SDK, a version by its number, from a model to the iterations that produced it, a
version made from a checkpoint -- over HTTP and in a data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.schemas import ids
from deardiary.schemas.errors import NotFound
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("registry") / "data") as server:
        running = start_in_thread(server.app())
        try:
            yield running.url
        finally:
            running.stop()


@pytest.mark.parametrize("mode", ["http", "folder"])
def test_versions_by_number_and_their_runs(url: str, tmp_path: Path, mode: str) -> None:
    target = url if mode == "http" else str(tmp_path / "folder")
    c = dd.connect(target, spool_dir=tmp_path / "spool")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    project = f"reg-{mode}"
    with c.start_iteration(project=project, experiment="e", name="first", capture_env=False) as a:
        first = a.register_model("clf")
    with c.start_iteration(project=project, experiment="e", name="second", capture_env=False) as b:
        ckpt = b.log_checkpoint(weights, step=3, metrics={"loss": 0.1})
    c.flush()
    second = c.register_checkpoint(ckpt, "clf")
    model_id = ids.model_id(ids.project_id(project), "clf")

    assert c.model_version(model_id, 1)["model_version_id"] == first
    v2 = c.model_version(model_id, 2)
    assert (v2["model_version_id"], v2["checkpoint_id"], v2["iteration_id"]) == (second, ckpt, b.id)
    with pytest.raises(NotFound):
        c.model_version(model_id, 3)
    with c.start_iteration(project=project, experiment="e", name="eval", capture_env=False) as ev:
        ev.use_model(second, purpose="evaluation")
        ev.use_model(second)  # again: no-op
    c.flush()
    runs = c.model_iterations(model_id)
    assert [(r["role"], r["name"], list(r["versions"])) for r in runs] == [
        ("produced", "first", [1]),
        ("produced", "second", [2]),
        ("used", "eval", [2]),
    ]

    c.set_tags(model_id, {"task": "vision", "production-ready": ""})  # a label: value ""
    c.set_notes(second, "from the best checkpoint")
    c.set_metadata(second, {"accuracy": 0.93})
    v2 = c.model_version(model_id, 2)
    assert v2["notes"] == "from the best checkpoint" and v2["metadata"] == {"accuracy": 0.93}
    tags = c.sql(f"SELECT tags FROM models WHERE model_id = '{model_id}'").to_pylist()
    assert tags == [{"tags": '{"production-ready":"","task":"vision"}'}]
    if mode == "http":
        listed = c.get("/api/v1/model-versions", model_id=model_id, version=2)["items"]
        assert [v["model_version_id"] for v in listed] == [second]
        c.delete(a.id)  # a deleted iteration no longer shows as a producer
        assert [r["name"] for r in c.model_iterations(model_id)] == ["second", "eval"]
    c.close()
