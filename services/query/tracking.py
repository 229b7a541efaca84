"""The tracking write routes as one part: management verbs (manage_routes.py), media,
histograms and checkpoints of iterations (media_routes.py)."""

from __future__ import annotations

from deardiary.services.http import RoutePart, part_from_routes
from deardiary.services.query import manage_routes, media_routes, registry_routes
from deardiary.services.query.writes import WriteContext

ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    **manage_routes.ROUTE_ACTIONS,
    **media_routes.ROUTE_ACTIONS,
}
"""The permission each tracking write route needs (update, delete; create otherwise)."""

__all__ = ["ROUTE_ACTIONS", "WriteContext", "tracking_part"]


def tracking_part(writes: WriteContext) -> RoutePart:
    media = media_routes.MediaRoutes(writes)
    routes = [
        *manage_routes.manage_routes(writes),
        *media_routes.media_routes(media),
        *registry_routes.registry_routes(writes),
    ]
    part = part_from_routes("tracking", routes)
    return RoutePart(part.name, [*part.endpoints, media_routes.upload_endpoint(media)])
