"""Exports in an S3-compatible bucket, for query services on machines without the workers'
folder: `deardiary worker --exports s3://bucket/prefix` uploads, `deardiary serve
--exports s3://bucket/prefix` reads.

Layout: ``<prefix>p<N>/manifest.json`` and every file it names under
``<prefix>p<N>/<store id>/<path>`` (entries, segments, tiles). Files are immutable and
uploaded before the manifest that names them; the manifest is one PUT, which an object
store makes visible whole. Objects the partition's manifest no longer names are deleted
GRACE_S later.

Query services download each file once into a cache folder and read it there. (DuckDB's
httpfs extension would read the bucket directly, but DuckDB downloads its extensions
from the internet at first use, and none matching our DuckDB is on PyPI: on a closed
network it cannot load. boto3 needs nothing more, and a local copy of an immutable
file is also the fastest to query.)

Credentials come from the usual AWS environment; `?endpoint_url=http://host:port` (or
`AWS_ENDPOINT_URL`) points at a store other than AWS (MinIO, Ceph, moto).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deardiary.schemas.errors import InvalidArgument, Unavailable
from deardiary.services.kafka_mode.partitions import (
    GRACE_S,
    MANIFEST,
    READ_VERSIONS,
    Manifest,
    referenced_files,
)

_log = logging.getLogger("deardiary.exports")
LIST_EVERY_S = 5.0  # how often a reader looks for partitions it has not seen


class Bucket:
    """A bucket and key prefix, from ``s3://bucket/prefix?endpoint_url=...``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgument(f"not an S3 URL: {url!r} (s3://bucket/prefix)")
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"endpoint_url", "region"}
        if unknown:
            raise InvalidArgument(f"unknown option {sorted(unknown)} in {url!r}")
        import boto3

        self.url = url
        self.name = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL"),
            region_name=options.get("region") or os.environ.get("AWS_DEFAULT_REGION"),
        )

    def key(self, partition: int, store_id: str, path: str) -> str:
        return f"{self.prefix}p{partition}/{store_id}/{path}"

    def manifest_key(self, partition: int) -> str:
        return f"{self.prefix}p{partition}/{MANIFEST}"


class S3Upload:
    """A worker's uploader: `publish` hands over a partition's latest manifest and returns;
    a thread uploads what it names that is not there yet, then the manifest. Manifests
    that arrive meanwhile replace the waiting one (only the latest matters). A failure
    is retried a second later; the folder's exports are not held up by it."""

    def __init__(self, url: str) -> None:
        self.bucket = Bucket(url)
        self._pending: dict[int, tuple[Path, Manifest]] = {}
        self._uploaded: dict[int, set[str]] = {}  # keys known to be in the bucket
        self._named: dict[int, set[str]] = {}  # keys the last uploaded manifest names
        self._dropped: dict[str, float] = {}
        self._busy: set[int] = set()
        self._cond = threading.Condition()
        self._stop = False
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="exports-upload", daemon=True)
        self._thread.start()

    def publish(self, root: Path, partition: int, manifest: Manifest) -> None:
        with self._cond:
            self._pending[partition] = (root, manifest)
            self._cond.notify_all()

    def flush(self, partition: int, timeout: float = 30.0) -> bool:
        """Wait until the partition's latest manifest is in the bucket (a partition is
        released only then, so its next owner's manifest is never overwritten by ours)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while partition in self._pending or partition in self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait(1.0)
                    if not self._pending:
                        self._collect()
                if self._stop and not self._pending:
                    return
                partition = min(self._pending)
                root, manifest = self._pending.pop(partition)
                self._busy.add(partition)
            try:
                self._upload(root, partition, manifest)
                self.last_error = ""
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning("uploading partition %d's exports failed: %s", partition, exc)
                with self._cond:
                    self._pending.setdefault(partition, (root, manifest))  # unless newer
                time.sleep(1.0)
            finally:
                with self._cond:
                    self._busy.discard(partition)
                    self._cond.notify_all()

    def _known(self, partition: int, store: str) -> set[str]:
        """The keys already in the bucket under this store (listed once per partition)."""
        known = self._uploaded.get(partition)
        if known is None:
            known = set()
            prefix = self.bucket.key(partition, store, "")
            pages = self.bucket.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket.name, Prefix=prefix):
                known.update(obj["Key"] for obj in page.get("Contents", ()))
            self._uploaded[partition] = known
        return known

    def _upload(self, root: Path, partition: int, manifest: Manifest) -> None:
        bucket, store = self.bucket, str(manifest["store_id"])
        known = self._known(partition, store)
        named = set()
        for path in referenced_files(manifest):
            key = bucket.key(partition, store, path)
            named.add(key)
            if key not in known:
                bucket.client.upload_file(str(root / path), bucket.name, key)
                known.add(key)
        body = json.dumps(manifest).encode()
        bucket.client.put_object(
            Bucket=bucket.name,
            Key=bucket.manifest_key(partition),
            Body=body,
            ContentType="application/json",
        )
        now = time.time()
        for key in self._named.get(partition, set()) - named:
            self._dropped.setdefault(key, now)
        self._named[partition] = named

    def _collect(self) -> None:
        """Delete objects no manifest has named for GRACE_S (called with the lock held,
        while idle)."""
        now = time.time()
        due = [k for k, since in self._dropped.items() if now - since >= GRACE_S]
        for key in due:
            try:
                self.bucket.client.delete_object(Bucket=self.bucket.name, Key=key)
            except Exception as exc:  # tried again at the next idle moment
                _log.warning("deleting %s failed: %s", key, exc)
                continue
            del self._dropped[key]
            for known in self._uploaded.values():
                known.discard(key)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=60)


class S3Source:
    """A query service's source of exports in a bucket (see exports_view.ExportSource)."""

    def __init__(self, url: str, cache: Path) -> None:
        self.bucket = Bucket(url)
        self.cache = Path(cache)
        self._partitions: list[int] = []
        self._listed = 0.0
        self._seen: dict[int, tuple[str, Manifest]] = {}  # ETag, manifest

    def _list(self) -> list[int]:
        now = time.monotonic()
        if now - self._listed >= LIST_EVERY_S or not self._partitions:
            found = []
            pages = self.bucket.client.get_paginator("list_objects_v2")
            pages_iter = pages.paginate(
                Bucket=self.bucket.name, Prefix=self.bucket.prefix, Delimiter="/"
            )
            for page in pages_iter:
                for common in page.get("CommonPrefixes", ()):
                    name = common["Prefix"][len(self.bucket.prefix) :].strip("/")
                    if name.startswith("p") and name[1:].isdigit():
                        found.append(int(name[1:]))
            self._partitions, self._listed = sorted(found), now
        return self._partitions

    def manifests(self) -> dict[int, Manifest]:
        client = self.bucket.client
        found: dict[int, Manifest] = {}
        try:
            partitions = self._list()
        except Exception as exc:
            raise Unavailable(f"cannot list {self.bucket.url}: {exc}") from exc
        for p in partitions:
            seen = self._seen.get(p)
            args: dict[str, Any] = {"Bucket": self.bucket.name, "Key": self.bucket.manifest_key(p)}
            if seen is not None:
                args["IfNoneMatch"] = seen[0]
            try:
                got = client.get_object(**args)
            except Exception as exc:
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if code in ("304", "NotModified") and seen is not None:
                    found[p] = seen[1]
                    continue
                if code in ("404", "NoSuchKey"):
                    continue
                raise Unavailable(f"cannot read {args['Key']}: {exc}") from exc
            try:
                manifest = json.loads(got["Body"].read())
            except ValueError:
                continue
            if manifest.get("version") not in READ_VERSIONS:
                continue
            self._seen[p] = (str(got.get("ETag", "")), manifest)
            found[p] = manifest
        return found

    def fetch(self, partition: int, manifest: Manifest, path: str) -> str:
        store = str(manifest["store_id"])
        local = self.cache / f"p{partition}" / store / path
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
            key = self.bucket.key(partition, store, path)
            try:
                self.bucket.client.download_file(self.bucket.name, key, str(tmp))
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                raise Unavailable(f"cannot download {key}: {exc}") from exc
            os.replace(tmp, local)
        return str(local)

    def close(self) -> None:
        pass
