"""Management verbs (issue 14) through the SDK against a real server and a data folder:
tags, notes, description, metadata, names, archive, delete with what it contains and
restore, moving an iteration, an experiment's end -- each an event, shown by reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import deardiary as dd
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("manage") / "data") as server:
        running = start_in_thread(server.app())
        try:
            yield running.url
        finally:
            running.stop()


def _get(url: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params)  # type: ignore[arg-type]


def test_verbs_over_http(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    with c.start_iteration(project="m", experiment="e", capture_env=False) as it:
        it.log_metric("loss", 0.5)
        artifact = it.log_artifact(weights)
    version = it.register_model("clf", artifact_id=artifact)
    c.flush()

    c.set_tags(it, {"team": "vision", "stale": "x"})
    c.delete_tags(it.id, ["stale"])
    c.set_notes(it.id, "looked good")
    c.set_description(it.id, "the baseline")
    c.set_metadata(artifact, {"epoch": 3})
    c.set_notes(artifact, "best so far")
    c.rename(it.experiment_id, "renamed")
    c.set_tags(version, {"approved": "yes"})
    row = c.get(f"/api/v1/iterations/{it.id}")
    assert row["tags"] == {"team": "vision"}
    assert (row["notes"], row["description"]) == ("looked good", "the baseline")
    art = c.get(f"/api/v1/artifacts/{artifact}")
    assert (art["notes"], art["metadata"]) == ("best so far", {"epoch": 3})
    assert c.get(f"/api/v1/experiments/{it.experiment_id}")["name"] == "renamed"
    assert c.get(f"/api/v1/model-versions/{version}")["tags"] == {"approved": "yes"}

    c.archive(it)
    listed = c.get("/api/v1/iterations", include_archived="false")["items"]
    assert it.id not in [r["iteration_id"] for r in listed]
    c.unarchive(it)
    assert c.get(f"/api/v1/iterations/{it.id}")["archived"] is False

    # deleting the experiment hides its iterations and artifacts; restoring shows them
    c.delete(it.experiment_id)
    assert _get(url, f"/api/v1/iterations/{it.id}").status_code == 404
    assert _get(url, f"/api/v1/artifacts/{artifact}").status_code == 404
    assert c.get("/api/v1/iterations", project_id=it.project_id)["total"] == 0
    c.restore(it.experiment_id)
    assert c.get(f"/api/v1/iterations/{it.id}")["iteration_id"] == it.id
    assert c.get(f"/api/v1/artifacts/{artifact}")["artifact_id"] == artifact

    # a move by name creates the experiment in the same project
    c.move(it, "holdout")
    moved = c.get(f"/api/v1/iterations/{it.id}")
    target = c.get("/api/v1/experiments", project_id=it.project_id, name="holdout")["items"]
    assert moved["experiment_id"] == target[0]["experiment_id"] != it.experiment_id

    c.set_experiment_status(it.experiment_id, "completed")
    ended = c.get(f"/api/v1/experiments/{it.experiment_id}")
    assert ended["status"] == "COMPLETED" and ended["end_date"] is not None
    history = c.get(f"/api/v1/history/{it.id}")["items"]
    assert {"tags_set", "notes_set", "iteration_moved"} <= {h["type"] for h in history}
    c.close()


def test_refusals(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    with c.start_iteration(project="m2", experiment="e", capture_env=False) as it:
        pass
    version = it.register_model("clf")
    c.flush()
    with pytest.raises(NotFound):
        c.set_tags("0123456789abcdef0123456789abcdef", {"a": "b"})
    with pytest.raises(InvalidArgument, match="model_version"):
        c.rename(version, "v-one")  # versions are known by their number
    with pytest.raises(InvalidArgument, match="tag key"):
        c.set_tags(it, {"bad\nkey": "x"})
    r = httpx.put(f"{url}/api/v1/entities/{it.id}/notes", json={"notes": 5})
    assert r.status_code == 400 and r.json()["error"]["details"]["path"] == "$.notes"
    r = httpx.post(f"{url}/api/v1/iterations/{it.id}/move", json={})
    assert r.status_code == 400
    r = httpx.post(f"{url}/api/v1/iterations/{it.id}/move", json={"experiment_id": "nope"})
    assert r.status_code == 404
    other = dd.connect(url, spool_dir=tmp_path / "spool2")
    with other.start_iteration(project="elsewhere", experiment="x", capture_env=False) as far:
        pass
    other.flush()
    r = httpx.post(
        f"{url}/api/v1/iterations/{it.id}/move", json={"experiment_id": far.experiment_id}
    )
    assert r.status_code == 409  # iterations never change project
    c.close()
    other.close()


def test_verbs_on_a_data_folder(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "folder"), spool_dir=tmp_path / "spool")
    with c.start_iteration(project="f", experiment="e", capture_env=False) as it:
        it.log_metric("loss", 1.0)
    c.set_tags(it, {"k": "v"})
    c.rename(it, "nice name")
    c.delete(it)
    assert c.sql("SELECT deleted, name, tags FROM iterations").to_pylist() == [
        {"deleted": True, "name": "nice name", "tags": '{"k":"v"}'}
    ]
    c.restore(it.id)
    assert c.sql("SELECT deleted FROM iterations").to_pylist() == [{"deleted": False}]
    c.move(it, "other")
    assert c.sql("SELECT count(*) AS n FROM experiments").to_pylist() == [{"n": 2}]
    with pytest.raises(NotFound):
        c.archive("0123456789abcdef0123456789abcdef")
    c.close()


@pytest.mark.parametrize("mode", ["http", "folder"])
def test_sdk_reads_a_group_in_a_step_window(url: str, tmp_path: Path, mode: str) -> None:
    c = dd.connect(url if mode == "http" else str(tmp_path / "f"), spool_dir=tmp_path / "s")
    with c.start_iteration(project="groups", experiment="e", capture_env=False) as it:
        for step in range(5):
            it.log_metric("loss", 1.0 / (step + 1))
        it.log_metric("loss", 0.9, group="val")
        it.log_metric("loss", 0.8, group="val")
    val = c.metric_history(it.id, "loss", group="val")
    assert val["value"].to_pylist() == [0.9, 0.8] and val["step"].to_pylist() == [0, 1]
    assert "client_time" in val.column_names
    window = c.metric_history(it.id, "loss", min_step=3, max_step=4)
    assert window["step"].to_pylist() == [3, 4]
    assert len(c.metric_history(it.id, "loss")) == 5
    c.close()
