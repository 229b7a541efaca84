"""Parameters: write-once string values per iteration and key."""

from __future__ import annotations

from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import Id, Key, Name, ParamValue
from deardiary.schemas.rules import keys_problem


class ParamsLogged(IterationEvent, frozen=True, kw_only=True, tag="params_logged"):
    """The same value again is a no-op; a different value is a recorded conflict."""

    iteration_id: Id
    params: dict[Key, ParamValue]
    section: Name = ""

    def problem(self) -> str | None:
        return keys_problem(self.params, "param")
