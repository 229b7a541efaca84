"""The base of every event: a frozen, keyword-only msgspec Struct in a tagged union.

Every subclass pins its tag explicitly (``tag="iteration_started"``); tags are
persisted type ids and are never derived from class or module names.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base class; never encoded by itself."""


class EntityKind(StrEnum):
    """Entities that share the generic tag/notes/archive/delete events."""

    PROJECT = "project"
    EXPERIMENT = "experiment"
    ITERATION = "iteration"
    MODEL = "model"
    MODEL_VERSION = "model_version"
    ARTIFACT = "artifact"
