"""Model registry and artifacts through the SDK, read back over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with embedded_server(tmp_path / "data") as server:
        running = start_in_thread(server.app())
        try:
            yield running.url
        finally:
            running.stop()


def test_versions_stages_aliases_and_lineage(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x00\x01weights" * 1000)
    versions = []
    for lr in (0.1, 0.01):
        with c.start_iteration(
            project="reg", experiment="e", params={"lr": lr}, capture_env=False
        ) as it:
            it.log_metric("loss", lr)
            art = it.log_artifact(weights, "ckpt/model.bin")
            versions.append(it.register_model("classifier", artifact_id=art))
    c.registry.stage("reg", "classifier", versions[0], "Production")
    c.registry.stage("reg", "classifier", versions[1], "Production", archive_existing=True)
    c.registry.set_alias("reg", "classifier", "champion", versions[1])
    offset = c.flush()

    got = httpx.get(f"{url}/api/v1/model-versions", params={"min_offset": offset}).json()
    by_id = {v["model_version_id"]: v for v in got["items"]}
    assert [by_id[v]["version"] for v in versions] == [1, 2]
    assert [by_id[v]["stage"] for v in versions] == ["Archived", "Production"]
    assert by_id[versions[1]]["aliases"] == ["champion"]

    lineage = httpx.get(f"{url}/api/v1/model-versions/{versions[1]}/lineage").json()
    assert lineage["model"]["name"] == "classifier"
    assert lineage["params"] == [
        {
            "key": "lr",
            "value": "0.01",
            "section": "",
            "logged_at": lineage["params"][0]["logged_at"],
            "type": "float",  # kept beside the text (issue 14)
        }
    ]
    assert lineage["metrics"][0]["last"] == 0.01
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert lineage["artifact"]["content_hash"] == digest
    blob = httpx.get(f"{url}/api/v1/artifacts/{lineage['artifact']['artifact_id']}/content")
    assert blob.content == weights.read_bytes()
    c.close()


def test_local_folder_artifacts_are_content_addressed(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "store"), spool_dir=tmp_path / "spool")
    f = tmp_path / "a.txt"
    f.write_text("same bytes")
    with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
        it.log_artifact(f, "one.txt")
        it.log_artifact(f, "two.txt")
    rows = c.sql("SELECT name, content_hash, size_bytes FROM artifacts ORDER BY name").to_pylist()
    assert [r["name"] for r in rows] == ["one.txt", "two.txt"]
    assert rows[0]["content_hash"] == rows[1]["content_hash"]
    stored = [p for p in (tmp_path / "store" / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 1
    c.close()


def test_client_error_carries_status_code_and_message(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    with pytest.raises(dd.ClientError) as err:
        c.get("/api/v1/iterations/does-not-exist")
    assert (err.value.status, err.value.code) == (404, "NOT_FOUND")
    assert "does-not-exist" in err.value.message
    with pytest.raises(dd.ClientError) as err:
        c.sql("DELETE FROM metrics")
    assert (err.value.status, err.value.code) == (403, "PERMISSION_DENIED")
    c.close()
