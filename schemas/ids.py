"""Identifiers made without a round trip.

Fresh ids are UUIDv7-style (48-bit millisecond time + 74 random bits): sortable by
creation time and collision-free across any realistic sweep. Named entities get
*derived* ids (a hash of their parent and name), so every process that creates
"project X" at once produces the same id and the fold sees one entity.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Callable
    from typing import Any


def _sha256() -> Callable[[bytes], Any]:
    """The interpreter's built-in SHA-256 (the same digest as hashlib's): importing
    hashlib loads OpenSSL, ~4 ms of every SDK process's start-up. Only the module this
    Python has is asked for: a failed import searches every path entry (~0.17 ms)."""
    name = "_sha2" if sys.version_info >= (3, 12) else "_sha256"
    try:
        sha: Callable[[bytes], Any] = __import__(name).sha256  # not importlib: ~0.2 ms
        return sha
    except (ImportError, AttributeError):
        import hashlib

        return hashlib.sha256


_sha = _sha256()


def sha256_hex(data: bytes) -> str:
    return str(_sha(data).hexdigest())


def new_id() -> str:
    """A fresh 32-hex-digit UUIDv7-style id."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version nibble 7
    return f"{value:032x}"


def derived_id(kind: str, *parts: str) -> str:
    """A deterministic id for a named entity: same kind and names, same id."""
    h = sha256_hex("\x1f".join((kind, *parts)).encode())
    return h[:32]


def project_id(name: str) -> str:
    return derived_id("project", name)


def experiment_id(project: str, name: str) -> str:
    return derived_id("experiment", project, name)


def iteration_id_for_external(experiment: str, external_id: str) -> str:
    """A restarted trial with the same external id resumes the same iteration."""
    return derived_id("iteration", experiment, external_id)


def model_id(project: str, name: str) -> str:
    return derived_id("model", project, name)


def artifact_id(experiment: str, iteration: str | None, name: str) -> str:
    """An artifact's id: the same name in the same iteration (or experiment) is one artifact."""
    return derived_id("artifact", experiment, iteration or "", name)


def user_id(username: str) -> str:
    return derived_id("user", username)


def now_us() -> int:
    """Wall clock in integer microseconds since the Unix epoch (the time unit of events)."""
    return time.time_ns() // 1000
