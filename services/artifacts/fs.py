"""Artifact bytes on a filesystem: <root>/sha256/ab/cd/<hash>, written temp-fsync-rename.

Who uploaded what: an empty file <root>/uploads/<uploader key>/ab/<hash> per upload.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from deardiary.schemas.errors import NotFound
from deardiary.services.artifacts import CHUNK, StoredBlob, check_hash, uploader_key


class FsArtifactStore:
    backend = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, content_hash: str) -> Path:
        h = check_hash(content_hash)
        return self.root / "sha256" / h[:2] / h[2:4] / h

    def _marker(self, content_hash: str, uploader: str) -> Path:
        h = check_hash(content_hash)
        return self.root / "uploads" / uploader_key(uploader) / h[:2] / h

    def put(self, stream: BinaryIO) -> StoredBlob:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            content_hash = digest.hexdigest()
            final = self._path(content_hash)
            if final.exists():
                os.unlink(tmp_name)  # identical bytes are stored once
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return StoredBlob(final.as_uri(), content_hash, size)

    def open(self, content_hash: str) -> Iterator[bytes]:
        path = self._path(content_hash)
        if not path.exists():
            raise NotFound(f"artifact bytes {content_hash} are not in the store")
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def exists(self, content_hash: str) -> bool:
        return self._path(content_hash).exists()

    def size(self, content_hash: str) -> int | None:
        try:
            return self._path(content_hash).stat().st_size
        except FileNotFoundError:
            return None

    def mark_uploaded(self, content_hash: str, uploader: str) -> None:
        marker = self._marker(content_hash, uploader)
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def uploaded(self, content_hash: str, uploader: str) -> bool:
        return self._marker(content_hash, uploader).exists()

    def delete(self, content_hash: str) -> bool:
        """Remove the bytes (retention frees content nothing names); False when absent."""
        try:
            self._path(content_hash).unlink()
        except FileNotFoundError:
            return False
        return True
