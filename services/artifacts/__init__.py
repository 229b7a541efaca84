"""Artifact bytes in a content-addressed store behind one small interface.

Bytes are named by their sha256, so identical bytes are stored once whatever they
are called; the name a user gives an artifact lives only in the ArtifactStored event.
Who uploaded which bytes is kept beside them (an empty marker per uploader and hash),
so an artifact record can be held to name only content its author may have.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from deardiary.schemas.errors import InvalidArgument

CHUNK = 1 << 20
MAX_NAME = 500
_HASH = re.compile(r"^[0-9a-f]{64}$")
_TOKEN = r"[a-z0-9!#$&^_.+-]{1,127}"
_MEDIA_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}$")

OCTET_STREAM = "application/octet-stream"
SERVED_MEDIA_TYPES = frozenset(
    {
        OCTET_STREAM,
        "text/plain",
        "text/csv",
        "text/tab-separated-values",
        "text/markdown",
        "application/json",
        "application/x-ndjson",
        "application/yaml",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/x-parquet",
        "application/vnd.apache.parquet",
        "application/zip",
        "application/gzip",
        "application/x-tar",
    }
)
"""Media types a download is served as; any other recorded type is served as
application/octet-stream. Nothing a browser would run (HTML, SVG, XML, JavaScript, PDF)."""
_TEXTUAL = frozenset({"application/json", "application/x-ndjson", "application/yaml"})


class StoredBlob:
    """What a put returns: where the bytes are and what they are."""

    def __init__(self, uri: str, content_hash: str, size_bytes: int) -> None:
        self.uri = uri
        self.content_hash = content_hash
        self.size_bytes = size_bytes


class ArtifactStore(Protocol):
    backend: str

    def put(self, stream: BinaryIO) -> StoredBlob:
        """Store the stream's bytes (hashing while writing); idempotent for equal bytes."""
        ...

    def open(self, content_hash: str) -> Iterator[bytes]:
        """The stored bytes in chunks; NotFound when absent."""
        ...

    def exists(self, content_hash: str) -> bool: ...

    def size(self, content_hash: str) -> int | None:
        """How many bytes are stored under this hash; None when absent."""
        ...

    def mark_uploaded(self, content_hash: str, uploader: str) -> None:
        """Remember, durably, that `uploader` (a user id) sent these bytes."""
        ...

    def delete(self, content_hash: str) -> bool:
        """Remove the bytes; False when they were not there (checkpoint retention)."""
        ...

    def uploaded(self, content_hash: str, uploader: str) -> bool:
        """Whether `uploader` ever sent these bytes (see mark_uploaded)."""
        ...


def check_hash(content_hash: str) -> str:
    if not _HASH.match(content_hash):
        raise InvalidArgument("content hash must be 64 lowercase hex digits")
    return content_hash


def uploader_key(uploader: str) -> str:
    """A user id as a path segment or object-key part: fixed length, hex only."""
    return hashlib.sha256(uploader.encode()).hexdigest()[:32]


def media_type(declared: str | None) -> str:
    """A declared media type, checked and reduced to its essence (`type/subtype`,
    lowercase, parameters dropped); absent or empty means application/octet-stream.
    Anything that is not a media type (spaces, line breaks, no slash) is refused."""
    essence = (declared or "").split(";", 1)[0].strip().lower()
    if not essence:
        return OCTET_STREAM
    if not _MEDIA_TYPE.match(essence):
        shown = str(declared)[:100]
        raise InvalidArgument(
            f"invalid media type {shown!r}: expected type/subtype", {"media_type": shown}
        )
    return essence


def served_media_type(recorded: str) -> str:
    """The Content-Type a download is sent with: the recorded type when it is on the
    list (text with charset=utf-8), else application/octet-stream."""
    try:
        essence = media_type(recorded)
    except InvalidArgument:
        return OCTET_STREAM
    if essence not in SERVED_MEDIA_TYPES:
        return OCTET_STREAM
    if essence.startswith("text/") or essence in _TEXTUAL:
        return f"{essence}; charset=utf-8"
    return essence


def validate_name(name: str) -> str:
    """An artifact name is a relative path of plain segments: no traversal, ever.

    Refuses absolute paths, '..' and '.' segments (also percent-encoded), backslashes,
    NUL and control characters, and empty segments.
    """
    decoded = name
    for _ in range(3):  # names may arrive encoded more than once
        decoded = urllib.parse.unquote(decoded)
    problems = []
    if not name or len(name) > MAX_NAME:
        problems.append(f"must be 1 to {MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
        problems.append("contains NUL or control characters")
    if "\\" in decoded:
        problems.append("contains a backslash")
    if decoded.startswith("/") or re.match(r"^[A-Za-z]:", decoded):
        problems.append("is absolute")
    if any(seg in ("", ".", "..") for seg in decoded.split("/")):
        problems.append("has an empty, '.' or '..' segment")
    if problems:
        raise InvalidArgument(f"invalid artifact name {name[:200]!r}: " + "; ".join(problems))
    return name
