"""Both artifact backends through one contract: real files, and a real S3 server (moto)."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pytest

from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.services.artifacts import ArtifactStore, validate_name
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.artifacts.s3 import S3ArtifactStore


@pytest.fixture(params=["fs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "fs":
        return FsArtifactStore(tmp_path / "artifacts")
    endpoint = request.getfixturevalue("s3_endpoint")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = f"b{abs(hash(tmp_path)) % 10**9}"
    client.create_bucket(Bucket=bucket)
    return S3ArtifactStore(client, bucket)


def test_put_then_open_round_trips_and_dedups(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 5000
    first = store.put(io.BytesIO(data))
    second = store.put(io.BytesIO(data))
    assert first.content_hash == second.content_hash and first.uri == second.uri
    assert first.size_bytes == len(data)
    assert b"".join(store.open(first.content_hash)) == data
    assert store.exists(first.content_hash)


def test_missing_bytes_are_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        list(store.open("0" * 64))
    with pytest.raises(InvalidArgument):
        store.exists("../../etc/passwd")


def test_fs_store_keeps_one_file_per_content(tmp_path: Path) -> None:
    fs = FsArtifactStore(tmp_path)
    for _ in range(3):
        fs.put(io.BytesIO(b"same"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == b"same"


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a\\b",
        "%2e%2e/x",
        "%252e%252e/x",
        "a\x00b",
        "C:/x",
        "",
        "a//b",
        "./a",
        "a/.",
        "x" * 501,
    ],
)
def test_traversal_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_name(name)


@pytest.mark.parametrize("name", ["model.pt", "checkpoints/epoch-3/model.safetensors", "a b.txt"])
def test_plain_names_pass(name: str) -> None:
    assert validate_name(name) == name


def test_sizes_and_uploader_markers(store: ArtifactStore) -> None:
    blob = store.put(io.BytesIO(b"12345"))
    assert store.size(blob.content_hash) == 5
    assert store.size("0" * 64) is None
    assert not store.uploaded(blob.content_hash, "u1")
    store.mark_uploaded(blob.content_hash, "u1")
    store.mark_uploaded(blob.content_hash, "u1")  # idempotent
    assert store.uploaded(blob.content_hash, "u1")
    assert not store.uploaded(blob.content_hash, "u2")
    assert b"".join(store.open(blob.content_hash)) == b"12345"
