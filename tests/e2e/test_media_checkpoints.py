"""Rich media and checkpoints (issue 14) through the SDK, against a real server and a data
folder: images, figures, text, tables and histograms per step, served back by hash; the
`media`, `histograms` and `checkpoints` relations; checkpoints best first by a metric,
keep-best-N retention that frees only content nothing else names, a model version made
from a checkpoint, and downloads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import deardiary as dd
from deardiary.client import Client
from deardiary.schemas.errors import InvalidArgument
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("media") / "data"
    with embedded_server(data) as server:
        running = start_in_thread(server.app())
        try:
            yield running.url, data
        finally:
            running.stop()


def _blob(data: Path, content_hash: str) -> Path:
    return data / "artifacts" / "sha256" / content_hash[:2] / content_hash[2:4] / content_hash


def _log_media(c: Client) -> str:
    with c.start_iteration(project="media", experiment="e", capture_env=False) as it:
        gradient = np.linspace(0, 1, 8 * 6 * 3).reshape(8, 6, 3)
        for step in range(2):
            it.log_image("samples", gradient * (step + 1) / 2, step=step, caption=f"s{step}")
        it.log_image("samples", (gradient * 255).astype(np.uint8), step=1, index=1)
        it.log_figure("pr", {"data": [{"x": [1, 2], "y": [3, 4]}], "layout": {}})
        it.log_figure("bars", {"$schema": "https://vega.github.io/schema/vega-lite/v5.json"})
        it.log_text("generated", "a cat sat", step=4)
        it.log_table("preds", [{"id": 1, "p": 0.9}, {"id": 2, "p": 0.1}], step=4)
        it.log_histogram("weights", np.arange(100.0), step=0, bins=4)
        it.log_histogram("weights", histogram=([0.0, 1.0, 2.0], [3.0, 1.0]), step=1)
    c.flush()
    return it.id


def test_media_and_histograms_spread_over_a_long_run(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """`max_steps`: each key's steps spread from its first to its last, over HTTP."""
    url, _ = served
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    with c.start_iteration(project="media", experiment="long", capture_env=False) as it:
        for step in range(10):
            it.log_histogram("grads", histogram=([0.0, 1.0], [float(step)]), step=step)
            it.log_text("lines", f"line {step}", step=step)
        it.log_histogram("bias", histogram=([0.0, 1.0], [1.0]), step=3)
    c.flush()
    path = f"/api/v1/iterations/{it.id}/histograms"
    rows = c.get(path, max_steps=4)["items"]
    assert [(h["key"], h["step"], h["key_steps"]) for h in rows] == [
        ("bias", 3, 1), ("grads", 0, 10), ("grads", 3, 10), ("grads", 6, 10), ("grads", 9, 10),
    ]  # fmt: skip
    assert [h["counts"] for h in rows[1:]] == [[0.0], [3.0], [6.0], [9.0]]
    listed = c.get(f"/api/v1/iterations/{it.id}/media", max_steps=3, limit=2)
    assert listed["total"] == 3 and [m["text"] for m in listed["items"]] == ["line 0", "line 5"]
    assert {m["key_steps"] for m in listed["items"]} == {10}
    for route in (path, f"/api/v1/iterations/{it.id}/media"):
        for bad in ("1", "0", "x", "10001"):
            r = httpx.get(f"{url}{route}", params={"max_steps": bad})
            assert r.status_code == 400, (route, bad)
            assert r.json()["error"]["code"] == "INVALID_ARGUMENT", (route, bad)
    c.close()


def test_media_over_http(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    it = _log_media(c)
    listed = c.get(f"/api/v1/iterations/{it}/media", key="samples")["items"]
    assert [(m["step"], m["index"], m["width"], m["height"]) for m in listed] == [
        (0, 0, 6, 8),
        (1, 0, 6, 8),
        (1, 1, 6, 8),
    ]
    assert listed[0]["caption"] == "s0" and listed[0]["media_type"] == "image/png"
    image = httpx.get(
        f"{url}/api/v1/iterations/{it}/content", params={"hash": listed[0]["content_hash"]}
    )
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.headers["Content-Type"] == "image/png"
    assert image.headers["Content-Disposition"] == "inline"
    assert "sandbox" in image.headers["Content-Security-Policy"]
    assert hashlib.sha256(image.content).hexdigest() == listed[0]["content_hash"]
    every = c.get(f"/api/v1/iterations/{it}/media")["items"]
    kinds = {(m["key"], m["kind"], m["step"]) for m in every}
    assert {("pr", "figure", 0), ("bars", "figure", 0), ("generated", "text", 4)} <= kinds
    figure = next(m for m in every if m["key"] == "bars")
    assert figure["metadata"] == {"format": "vega-lite"}
    table = next(m for m in every if m["key"] == "preds")
    got = httpx.get(f"{url}/api/v1/iterations/{it}/content", params={"hash": table["content_hash"]})
    assert json.loads(got.content) == {"columns": ["id", "p"], "rows": [[1, 0.9], [2, 0.1]]}
    assert next(m for m in every if m["key"] == "generated")["text"] == "a cat sat"

    hists = c.get(f"/api/v1/iterations/{it}/histograms", key="weights")["items"]
    assert [h["counts"] for h in hists] == [[25.0, 25.0, 25.0, 25.0], [3.0, 1.0]]
    assert (hists[0]["min"], hists[0]["max"], hists[0]["count"]) == (0.0, 99.0, 100.0)
    sql = c.sql(
        f"SELECT kind, count(*) AS n FROM media WHERE iteration_id = '{it}'"
        " GROUP BY kind ORDER BY kind"
    ).to_pylist()
    assert sql == [
        {"kind": "figure", "n": 2},
        {"kind": "image", "n": 3},
        {"kind": "table", "n": 1},
        {"kind": "text", "n": 1},
    ]
    # content the iteration does not name is not served through it
    other = httpx.get(f"{url}/api/v1/iterations/{it}/content", params={"hash": "0" * 64})
    assert other.status_code == 404
    with pytest.raises(InvalidArgument):
        _ = c.buffer  # the bad image below is refused before anything is sent
        with c.start_iteration(project="media", experiment="e", capture_env=False) as bad:
            bad.log_image("x", b"not an image")
    c.close()


def _checkpoints(c: Client, tmp_path: Path) -> tuple[str, list[str]]:
    with c.start_iteration(project="ckpt", experiment="e", capture_env=False) as it:
        made = []
        for step, loss in enumerate([0.9, 0.3, 0.5, 0.7]):
            folder = tmp_path / f"ckpt-{step}"
            (folder / "opt").mkdir(parents=True)
            (folder / "model.bin").write_bytes(f"weights {step}".encode())
            (folder / "opt" / "config.json").write_bytes(b'{"lr": 0.1}')  # the same each time
            made.append(it.log_checkpoint(folder, step=step, metrics={"loss": loss}))
    c.flush()
    return it.id, made


@pytest.mark.parametrize("mode", ["http", "folder"])
def test_checkpoints_rank_retain_register_download(
    served: tuple[str, Path], tmp_path: Path, mode: str
) -> None:
    url, data = served
    if mode == "folder":
        data = tmp_path / "folder"
    c = dd.connect(url if mode == "http" else str(data), spool_dir=tmp_path / "spool")
    it, made = _checkpoints(c, tmp_path)
    best = c.checkpoints(it, order_by="loss", goal="min")
    assert [b["step"] for b in best] == [1, 2, 3, 0]
    assert sorted(f["path"] for f in best[0]["files"]) == ["model.bin", "opt/config.json"]
    assert best[0]["metrics"] == {"loss": 0.3}
    version = c.register_checkpoint(made[3], "clf")  # a version keeps its checkpoint
    hashes = {b["step"]: {f["path"]: f["content_hash"] for f in b["files"]} for b in best}

    result = c.retain_checkpoints(it, 1, order_by="loss", goal="min")
    assert result["kept"] == [made[1], made[3]] and result["discarded"] == [made[2], made[0]]
    freed = set(result["freed_content"])
    assert freed == {hashes[2]["model.bin"], hashes[0]["model.bin"]}  # config.json is shared
    assert not _blob(data, hashes[0]["model.bin"]).exists()
    assert _blob(data, hashes[1]["opt/config.json"]).exists()
    assert [b["step"] for b in c.checkpoints(it, order_by="loss")] == [1, 3]
    everything = c.checkpoints(it, include_discarded=True)
    assert [b["discarded"] for b in everything] == [True, False, True, False]
    rows = c.sql(
        f"SELECT checkpoint_id FROM model_versions WHERE model_version_id = '{version}'"
    ).to_pylist()
    assert rows == [{"checkpoint_id": made[3]}]

    written = c.download_checkpoint(made[1], tmp_path / "restored")
    assert sorted(p.relative_to(tmp_path / "restored").as_posix() for p in written) == [
        "model.bin",
        "opt/config.json",
    ]
    assert (tmp_path / "restored" / "model.bin").read_bytes() == b"weights 1"
    c.close()


def test_download_artifact(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    with c.start_iteration(project="art", experiment="e", capture_env=False) as it:
        artifact = it.log_artifact(source, "models/weights.bin")
    (tmp_path / "out").mkdir()
    got = c.download_artifact(artifact, tmp_path / "out")
    assert got == tmp_path / "out" / "weights.bin" and got.read_bytes() == source.read_bytes()
    c.close()
