"""Changes shared by every kind of entity: tags, notes, metadata, description, archive, delete.

Each is a fact about one entity; the history of all of them stays in the log.
"""

from __future__ import annotations

from typing import Any

from deardiary.schemas.events.base import EntityKind, Event


class TagsSet(Event, frozen=True, kw_only=True, tag="tags_set"):
    """Merges key/value tags into the entity's tags (a label is a tag with value "")."""

    entity: EntityKind
    entity_id: str
    tags: dict[str, str]


class TagsDeleted(Event, frozen=True, kw_only=True, tag="tags_deleted"):
    entity: EntityKind
    entity_id: str
    keys: list[str]


class NotesSet(Event, frozen=True, kw_only=True, tag="notes_set"):
    entity: EntityKind
    entity_id: str
    notes: str


class DescriptionSet(Event, frozen=True, kw_only=True, tag="description_set"):
    entity: EntityKind
    entity_id: str
    description: str


class MetadataSet(Event, frozen=True, kw_only=True, tag="metadata_set"):
    """Merges JSON-compatible metadata into the entity's metadata."""

    entity: EntityKind
    entity_id: str
    metadata: dict[str, Any]


class EntityArchived(Event, frozen=True, kw_only=True, tag="entity_archived"):
    """archived=False restores an archived entity."""

    entity: EntityKind
    entity_id: str
    archived: bool = True


class EntityDeleted(Event, frozen=True, kw_only=True, tag="entity_deleted"):
    """Hides the entity from reads; its events stay in the log."""

    entity: EntityKind
    entity_id: str
