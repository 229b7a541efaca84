"""Parameters: write-once string values per iteration and key."""

from __future__ import annotations

from deardiary.schemas.events.base import Event


class ParamsLogged(Event, frozen=True, kw_only=True, tag="params_logged"):
    """The same value again is a no-op; a different value is a recorded conflict."""

    iteration_id: str
    params: dict[str, str]
    section: str = ""
