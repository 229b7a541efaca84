"""The ``mlflow-artifacts`` proxy with the real MLflow client against ``deardiary serve``.

Round trips are byte-for-byte: files and folders logged with ``mlflow.log_artifact(s)``
come back equal from ``mlflow.artifacts.download_artifacts``, are listed as MLflow
lists them, and are ordinary artifact records of the run's iteration (what our SDK
logged is served to MLflow too). Bad paths, unknown runs and a client told to use
multipart uploads get MLflow's answers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

import deardiary as dd

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(scope="module")
def url(mlflow_server: str) -> str:
    """The module's `deardiary serve` (tests/mlflow/conftest.py), the client pointed at it."""
    return mlflow_server


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_files_and_folders_round_trip_byte_for_byte(url: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    files = {
        "notes.txt": b"hello\n",
        "weights.bin": bytes(range(256)) * 4099,  # ~1 MB, more than one chunk
        "deep/table.csv": b"a,b\n1,2\n",
        "deep/er/empty.json": b"",
    }
    for name, content in files.items():
        (src / name).write_bytes(content)
    single = tmp_path / "single.yaml"
    single.write_bytes(b"k: v\n")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(src), artifact_path="data")
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="data/deep")  # same bytes, two names
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")

    client = MlflowClient()
    top = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)}
    assert top == {("data", True, None), ("single.yaml", False, 5)}
    deep = {(f.path, f.is_dir) for f in client.list_artifacts(run_id, "data/deep")}
    assert deep == {
        ("data/deep/er", True),
        ("data/deep/table.csv", False),
        ("data/deep/single.yaml", False),
    }
    assert client.list_artifacts(run_id, "data/notes.txt") == []  # a file lists nothing
    assert client.list_artifacts(run_id, "no/such/folder") == []

    got = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="data", dst_path=str(tmp_path / "out")
    )
    expected = {**files, "deep/single.yaml": b"k: v\n"}
    assert _tree(Path(got)) == expected
    one = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run_id}/data/weights.bin", dst_path=str(tmp_path / "one")
    )
    assert Path(one).read_bytes() == files["weights.bin"]

    # ordinary DearDiary artifacts of the run's iteration, readable with SQL
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    try:
        rows = c.sql(f"SELECT name, size_bytes FROM artifacts WHERE iteration_id = '{run_id}'")
    finally:
        c.close()
    recorded = dict(zip(rows["name"].to_pylist(), rows["size_bytes"].to_pylist(), strict=True))
    assert recorded == {
        **{f"data/{k}": len(v) for k, v in files.items()},
        "data/deep/single.yaml": 5,
        "single.yaml": 5,
    }


def test_what_the_sdk_logged_is_served_to_mlflow(url: str, tmp_path: Path) -> None:
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x00sdk bytes\xff")
    try:
        with c.start_iteration(project="sdk-project", experiment="e", capture_env=False) as it:
            it.log_artifact(weights, name="ckpt/w.bin")
        c.flush()
    finally:
        c.close()
    client = MlflowClient()
    assert [f.path for f in client.list_artifacts(it.id, "ckpt")] == ["ckpt/w.bin"]
    got = client.download_artifacts(it.id, "ckpt/w.bin", str(tmp_path))
    assert Path(got).read_bytes() == b"\x00sdk bytes\xff"


def test_downloads_are_attachments_never_rendered(url: str, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(b"<script>alert(1)</script>")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(page))
    path = f"{run.info.artifact_uri.removeprefix('mlflow-artifacts:')}/page.html"
    r = httpx.get(f"{url}{ARTIFACTS}{path}")
    assert r.status_code == 200 and r.content == b"<script>alert(1)</script>"
    assert r.headers["Content-Type"] == "application/octet-stream"  # text/html is not served
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_bad_paths_and_unknown_runs_are_refused(url: str, tmp_path: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.log_param("p", 1)
    root = run.info.artifact_uri.removeprefix("mlflow-artifacts:")
    experiment, run_id = root.strip("/").split("/")[:2]
    bad = [
        f"{root}/%2E%2E/%2E%2E/escape.txt",  # decoded by the server: '..' segments
        f"{root}/a\\b.txt",
        f"{root}/%252E%252E/twice.txt",  # encoded twice
    ]
    for path in bad:
        r = httpx.put(f"{url}{ARTIFACTS}{path}", content=b"x")
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, r.text)
    unknown = [
        f"/{experiment}/0123456789abcdef0123456789abcdef/artifacts/x.txt",  # no such run
        f"/0123456789abcdef0123456789abcdef/{run_id}/artifacts/x.txt",  # not its experiment
        f"/{experiment}/models/m-0123456789abcdef0123456789abcdef/artifacts/x.txt",
        f"/{experiment}/models/{run_id}/artifacts/x.txt",  # a run is not a logged model
    ]
    for path in unknown:
        r = httpx.put(f"{url}{ARTIFACTS}{path}", content=b"x")
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (path, r.text)
    missing = httpx.get(f"{url}{ARTIFACTS}{root}/never-logged.txt")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    listed = httpx.get(f"{url}{ARTIFACTS}", params={"path": f"{experiment}/{'f' * 32}/artifacts"})
    assert listed.status_code == 404


def test_deleting_a_folder_hides_its_artifacts(url: str, tmp_path: Path) -> None:
    for name in ("keep.txt", "tmp/a.txt", "tmp/b/c.txt"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(name.encode())
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "src"))
    root = run.info.artifact_uri.removeprefix("mlflow-artifacts:")
    r = httpx.delete(f"{url}{ARTIFACTS}{root}/tmp")
    assert r.status_code == 200, r.text
    client = MlflowClient()
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["keep.txt"]


def test_a_client_told_to_upload_in_parts_falls_back(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))
    got = MlflowClient().download_artifacts(run.info.run_id, "big.bin", str(tmp_path / "out"))
    assert Path(got).read_bytes() == big.read_bytes()


def test_the_tracking_listing_and_server_info(url: str) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text("x", "d/e/f.txt")
        mlflow.log_text("yy", "d/g.txt")
    listed = httpx.get(
        f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": run.info.run_id, "path": "d"}
    )
    assert listed.json() == {
        "root_uri": run.info.artifact_uri,
        "files": [
            {"path": "d/e", "is_dir": True},
            {"path": "d/g.txt", "is_dir": False, "file_size": 2},
        ],
    }
    unknown = httpx.get(f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": "f" * 32})
    assert unknown.status_code == 404
    # what the client asks before each download: plain transfers, asked once a minute
    info = httpx.get(f"{url}/api/3.0/mlflow/server-info").json()
    assert info["multipart_uploads_enabled"] is False
    assert info["multipart_downloads_enabled"] is False


def test_parallel_downloads_wait_for_their_turn(url: str, tmp_path: Path) -> None:
    """MLflow's client downloads a folder with up to 20 threads (and a user may run several
    clients): transfers beyond a caller's share wait for their turn instead of being
    refused -- the tests' client never retries."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8_000_000))  # long enough for the transfers to overlap
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))
    path = f"{url}{ARTIFACTS}{run.info.artifact_uri.removeprefix('mlflow-artifacts:')}/big.bin"

    def download(_: int) -> tuple[int, bool]:
        r = httpx.get(path, timeout=120)
        return r.status_code, r.content == big.read_bytes()

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(download, range(12))) == [(200, True)] * 12
