"""Which model versions an iteration used (an evaluation, a fine-tune's starting point),
so a model leads to the runs that produced it and to the runs that used it."""

from __future__ import annotations

from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import Id, Text


class ModelVersionUsed(IterationEvent, frozen=True, kw_only=True, tag="model_version_used"):
    """The iteration used this model version; the same again is a no-op."""

    iteration_id: Id
    model_version_id: Id
    purpose: Text = ""

    def references(self) -> list[tuple[str, str]]:
        return [("model_version", self.model_version_id)]


__all__ = ["ModelVersionUsed"]
