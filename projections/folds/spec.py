"""One declaration per event type of everything the fold does with it.

Each folds/<aggregate>.py module ends with a `SPECS` table: for every event type it
folds, which stored rows the fold reads (`lookups`), the fold itself, and what the
event history shows of it (`summary`, default: its fields minus secrets). fold.py
merges them, and a test checks that every type of the union has exactly one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from deardiary.projections.draft import Draft, json_value
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import Event

E = TypeVar("E", bound=Event)
_SECRET_FIELDS = ("password_hash", "token_hash")


def fields_summary(event: Event) -> Any:
    """The event's fields, minus secrets."""
    body = json_value(event)
    for secret in _SECRET_FIELDS:
        body.pop(secret, None)
    return body


@dataclass(frozen=True)
class FoldSpec(Generic[E]):
    fold: Callable[[Draft, E], None]
    lookups: Callable[[Lookups, E], None]
    summary: Callable[[E], Any] = fields_summary


Specs = dict[type[Event], FoldSpec[Any]]
