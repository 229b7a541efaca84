"""The base of every event: a frozen, keyword-only msgspec Struct in a tagged union.

Every subclass pins its tag explicitly (``tag="iteration_started"``); tags are
persisted type ids and are never derived from class or module names.

Each type also declares, in one place, what every consumer needs to know about it
(class variables: never on the wire): which id field keeps it in order in the log
(`partition_fields`), which entity it is about (`subject_kind`/`subject_field`, for
the history), which entity's project it writes into and with which permission
(`parent_kind`/`parent_field`/`permission`), and `problem()` for the rules a field
type cannot say. Gateway, authoriser and folds all read these declarations.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

import msgspec


class EntityKind(StrEnum):
    """Entities that share the generic tag/notes/archive/delete events."""

    PROJECT = "project"
    EXPERIMENT = "experiment"
    ITERATION = "iteration"
    MODEL = "model"
    MODEL_VERSION = "model_version"
    ARTIFACT = "artifact"


class Permission(StrEnum):
    """What an event needs of its writer in the project it writes into."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ADMIN = "admin"  # users, grants and tokens: written by the server's admin paths only


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base class; never encoded by itself."""

    partition_fields: ClassVar[tuple[str, ...]] = ()
    """Id fields; the first non-empty one is the partition key."""
    subject_kind: ClassVar[str] = ""
    subject_field: ClassVar[str] = ""
    parent_kind: ClassVar[str] = ""
    """The entity whose project this event writes into ("project", "experiment", ...)."""
    parent_field: ClassVar[str] = ""
    permission: ClassVar[Permission] = Permission.CREATE

    def partition_key(self) -> str:
        for name in self.partition_fields:
            value = getattr(self, name)
            if value:
                return str(value)
        return ""

    def subject(self) -> tuple[str, str]:
        """(kind, id) of the entity this event is about, for "who changed what, when"."""
        return self.subject_kind, str(getattr(self, self.subject_field, "") or "")

    def parent(self) -> tuple[str, str | None]:
        """(kind, id) of the entity whose project the event writes into."""
        return self.parent_kind, getattr(self, self.parent_field, None)

    def problem(self) -> str | None:
        """Why this event can never be applied beyond what its field types say, or None."""
        return None

    def contents(self) -> list[tuple[str, int]]:
        """(sha256, size in bytes) of stored content the event names (media, checkpoint
        files): the server holds its writer to naming only bytes it may have."""
        return []

    def references(self) -> list[tuple[str, str]]:
        """(kind, id) of entities the event names besides its parent (a model version an
        iteration used): they must exist, and its writer must be able to read them."""
        return []
