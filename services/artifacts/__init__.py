"""Artifact bytes in a content-addressed store behind one small interface.

Bytes are named by their sha256, so identical bytes are stored once whatever they
are called; the name a user gives an artifact lives only in the ArtifactStored event.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from deardiary.schemas.errors import InvalidArgument

CHUNK = 1 << 20
MAX_NAME = 500
_HASH = re.compile(r"^[0-9a-f]{64}$")


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


def check_hash(content_hash: str) -> str:
    if not _HASH.match(content_hash):
        raise InvalidArgument("content hash must be 64 lowercase hex digits")
    return content_hash


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
        raise InvalidArgument(f"invalid artifact name {name!r}: " + "; ".join(problems))
    return name
