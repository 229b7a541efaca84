"""Changes shared by every kind of entity: tags, notes, metadata, description, archive, delete.

Each is a fact about one entity; the history of all of them stays in the log. Each type
declares which kinds of entity it may target (`targets`): an event aimed at a kind that
cannot hold it is refused by the gateway and recorded as a conflict by the fold, never
silently dropped.
"""

from __future__ import annotations

from typing import ClassVar

from deardiary.schemas.events.base import EntityKind, Event, Permission
from deardiary.schemas.limits import Id, Key, Metadata, Tags, Text
from deardiary.schemas.rules import keys_problem, metadata_problem

ALL_KINDS = frozenset(EntityKind)
# Artifacts have no notes or metadata; iterations have no description.
_NOT_ARTIFACTS = ALL_KINDS - {EntityKind.ARTIFACT}
_NOT_ITERATIONS = ALL_KINDS - {EntityKind.ITERATION}


class EntityEvent(Event, frozen=True, kw_only=True):
    """An event about any kind of entity, named by (`entity`, `entity_id`)."""

    partition_fields: ClassVar[tuple[str, ...]] = ("entity_id",)
    permission: ClassVar[Permission] = Permission.UPDATE
    targets: ClassVar[frozenset[EntityKind]] = ALL_KINDS

    entity: EntityKind
    entity_id: Id

    def subject(self) -> tuple[str, str]:
        return str(self.entity), self.entity_id

    def parent(self) -> tuple[str, str | None]:
        return str(self.entity), self.entity_id

    def problem(self) -> str | None:
        if self.entity not in self.targets:
            allowed = ", ".join(sorted(self.targets))
            return f"{self.__struct_config__.tag} cannot target a {self.entity} (only {allowed})"
        return None


class TagsSet(EntityEvent, frozen=True, kw_only=True, tag="tags_set"):
    """Merges key/value tags into the entity's tags (a label is a tag with value "")."""

    tags: Tags

    def problem(self) -> str | None:
        return super().problem() or keys_problem(self.tags, "tag")


class TagsDeleted(EntityEvent, frozen=True, kw_only=True, tag="tags_deleted"):
    keys: list[Key]

    def problem(self) -> str | None:
        return super().problem() or keys_problem(self.keys, "tag")


class NotesSet(EntityEvent, frozen=True, kw_only=True, tag="notes_set"):
    targets: ClassVar[frozenset[EntityKind]] = _NOT_ARTIFACTS

    notes: Text


class DescriptionSet(EntityEvent, frozen=True, kw_only=True, tag="description_set"):
    targets: ClassVar[frozenset[EntityKind]] = _NOT_ITERATIONS

    description: Text


class MetadataSet(EntityEvent, frozen=True, kw_only=True, tag="metadata_set"):
    """Merges JSON-compatible metadata into the entity's metadata."""

    targets: ClassVar[frozenset[EntityKind]] = _NOT_ARTIFACTS

    metadata: Metadata

    def problem(self) -> str | None:
        return super().problem() or metadata_problem(self.metadata)


class EntityArchived(EntityEvent, frozen=True, kw_only=True, tag="entity_archived"):
    """archived=False restores an archived entity."""

    archived: bool = True


class EntityDeleted(EntityEvent, frozen=True, kw_only=True, tag="entity_deleted"):
    """Hides the entity from reads; its events stay in the log."""

    permission: ClassVar[Permission] = Permission.DELETE
