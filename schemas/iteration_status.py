"""An iteration's status: the SDK's write path names it without importing the event
types (and msgspec with them, see `schemas/wire.py`); `events.IterationStatus` is this."""

from __future__ import annotations

from enum import StrEnum


class IterationStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    KILLED = "KILLED"
