"""Artifact bytes in an S3-compatible bucket, keyed by sha256 (boto3, the `s3` extra).

Who uploaded what: an empty object <prefix>uploads/<uploader key>/<hash> per upload.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from deardiary.schemas.errors import NotFound, Unavailable
from deardiary.services.artifacts import CHUNK, StoredBlob, check_hash, uploader_key


class S3ArtifactStore:
    backend = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "deardiary/") -> None:
        """`client` is a ready boto3 S3 client (endpoint and credentials are the caller's)."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3ArtifactStore:
        """s3://bucket/prefix; credentials come from the usual AWS environment."""
        import boto3

        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        client = boto3.client("s3", endpoint_url=endpoint_url)
        return cls(client, bucket, prefix.rstrip("/") + "/" if prefix else "deardiary/")

    def _key(self, content_hash: str) -> str:
        return f"{self.prefix}sha256/{check_hash(content_hash)}"

    def _marker(self, content_hash: str, uploader: str) -> str:
        return f"{self.prefix}uploads/{uploader_key(uploader)}/{check_hash(content_hash)}"

    def put(self, stream: BinaryIO) -> StoredBlob:
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile() as spooled:  # hash first: the key is the hash
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                spooled.write(chunk)
                size += len(chunk)
            content_hash = digest.hexdigest()
            if not self.exists(content_hash):
                spooled.seek(0)
                try:
                    self.client.upload_fileobj(spooled, self.bucket, self._key(content_hash))
                except Exception as exc:
                    raise Unavailable(f"S3 upload failed: {exc}") from exc
        return StoredBlob(f"s3://{self.bucket}/{self._key(content_hash)}", content_hash, size)

    def open(self, content_hash: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(content_hash))["Body"]
        except self.client.exceptions.NoSuchKey as exc:
            raise NotFound(f"artifact bytes {content_hash} are not in the store") from exc
        return iter(lambda: body.read(CHUNK), b"")

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise Unavailable(f"S3 is unreachable: {exc}") from exc
        return found

    def exists(self, content_hash: str) -> bool:
        return self._head(self._key(content_hash)) is not None

    def size(self, content_hash: str) -> int | None:
        head = self._head(self._key(content_hash))
        return None if head is None else int(head["ContentLength"])

    def mark_uploaded(self, content_hash: str, uploader: str) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._marker(content_hash, uploader), Body=b""
            )
        except Exception as exc:
            raise Unavailable(f"S3 is unreachable: {exc}") from exc

    def uploaded(self, content_hash: str, uploader: str) -> bool:
        return self._head(self._marker(content_hash, uploader)) is not None

    def delete(self, content_hash: str) -> bool:
        """Remove the object (retention frees content nothing names); False when absent."""
        key = self._key(content_hash)
        if self._head(key) is None:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise Unavailable(f"S3 is unreachable: {exc}") from exc
        return True
