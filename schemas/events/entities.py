"""Changes shared by every kind of entity: tags, notes, metadata, description, name,
archive, delete and restore.

Each is a fact about one entity; the history of all of them stays in the log. Each type
declares which kinds of entity it may target (`targets`): an event aimed at a kind that
cannot hold it is refused by the gateway and recorded as a conflict by the fold, never
silently dropped. Every kind holds tags, notes, description and metadata; every kind but
a model version (known by its number) has a name.
"""

from __future__ import annotations

from typing import ClassVar

from deardiary.schemas.events.base import EntityKind, Event, Permission
from deardiary.schemas.limits import Id, IdOrEmpty, Key, Metadata, Name, Tags, Text
from deardiary.schemas.rules import keys_problem, metadata_problem

ALL_KINDS = frozenset(EntityKind)
NAMED_KINDS = ALL_KINDS - {EntityKind.MODEL_VERSION}


class EntityEvent(Event, frozen=True, kw_only=True):
    """An event about any kind of entity, named by (`entity`, `entity_id`).

    `owner` is the partition key of the entity's own events, where that is not its id: a
    model version's model, an artifact's iteration (or experiment). The event must land
    in the partition holding the entity's row, so the server stamps it (the gateway's
    checker, services/gateway/parents.py); an older event without one is keyed by
    `entity_id` as before (a single-partition log never minds)."""

    partition_fields: ClassVar[tuple[str, ...]] = ("owner", "entity_id")
    permission: ClassVar[Permission] = Permission.UPDATE
    targets: ClassVar[frozenset[EntityKind]] = ALL_KINDS

    entity: EntityKind
    entity_id: Id
    owner: IdOrEmpty = ""

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
    notes: Text


class DescriptionSet(EntityEvent, frozen=True, kw_only=True, tag="description_set"):
    description: Text


class MetadataSet(EntityEvent, frozen=True, kw_only=True, tag="metadata_set"):
    """Merges JSON-compatible metadata into the entity's metadata."""

    metadata: Metadata

    def problem(self) -> str | None:
        return super().problem() or metadata_problem(self.metadata)


class EntityArchived(EntityEvent, frozen=True, kw_only=True, tag="entity_archived"):
    """archived=False restores an archived entity."""

    archived: bool = True


class EntityDeleted(EntityEvent, frozen=True, kw_only=True, tag="entity_deleted"):
    """Hides the entity from reads -- and what it contains with it (a deleted experiment's
    iterations and artifacts, a deleted project's experiments, ...); its events stay in the
    log, and `EntityRestored` brings it back."""

    permission: ClassVar[Permission] = Permission.DELETE


class EntityRestored(EntityEvent, frozen=True, kw_only=True, tag="entity_restored"):
    """Undoes `EntityDeleted`: the entity (and what it contains) is shown again."""

    permission: ClassVar[Permission] = Permission.DELETE


class EntityRenamed(EntityEvent, frozen=True, kw_only=True, tag="entity_renamed"):
    """A new display name. Ids never change: a project, experiment or model whose id was
    derived from its first name keeps that id, so the SDK finds it by the first name."""

    targets: ClassVar[frozenset[EntityKind]] = NAMED_KINDS

    name: Name

    def problem(self) -> str | None:
        if not self.name.strip():
            return "a name cannot be empty"
        return super().problem()
