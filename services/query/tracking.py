"""The tracking write routes as one part: management verbs (manage_routes.py), and what
iterations log beyond metrics (media, checkpoints)."""

from __future__ import annotations

from deardiary.services.http import RoutePart, part_from_routes
from deardiary.services.query.manage_routes import ROUTE_ACTIONS, manage_routes
from deardiary.services.query.writes import WriteContext

__all__ = ["ROUTE_ACTIONS", "WriteContext", "tracking_part"]


def tracking_part(writes: WriteContext) -> RoutePart:
    return part_from_routes("tracking", manage_routes(writes))
