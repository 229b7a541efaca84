"""Parameters: write-once string values per iteration, section and key.

A nested configuration is flattened by the SDK into dotted keys ("optimizer.lr") and also
kept whole (`config`); each value's Python type is kept beside its text (`types`:
int, float, bool, str, none, json), while filters compare the text as always. The same
key in two sections (ClearML's "Args/lr" and "General/lr") is two params, not a conflict.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import Id, Key, Metadata, Name, ParamValue
from deardiary.schemas.rules import keys_problem, metadata_problem

ParamType = Annotated[
    Literal["int", "float", "bool", "str", "none", "json"], Meta(description="the value's type")
]


class ParamsLogged(IterationEvent, frozen=True, kw_only=True, tag="params_logged"):
    """The same value again is a no-op; a different value is a recorded conflict."""

    iteration_id: Id
    params: dict[Key, ParamValue]
    section: Name = ""
    types: dict[Key, ParamType] = {}
    """The type of each value that was not a string when logged (missing: str)."""
    config: Metadata = {}
    """The configuration as logged, nested (kept whole beside its flattened params)."""

    def problem(self) -> str | None:
        unknown = sorted(set(self.types) - set(self.params))
        if unknown:
            return f"types name params that are not logged: {unknown[:5]}"
        return keys_problem(self.params, "param") or metadata_problem(self.config, "config")
