"""A metric series of a group and a step window, from the SDK (issue 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deardiary.schemas.errors import InvalidArgument

if TYPE_CHECKING:
    import pyarrow as pa

    from deardiary.services.embedded import EmbeddedStore

    from .client import Client
    from .reads import HttpReader
    from .transport import Acked


def metric_window(
    client: Client,
    iteration_id: str,
    key: str,
    max_points: int | None,
    group: str,
    min_step: int | None,
    max_step: int | None,
) -> pa.Table:
    """step, value, recorded_at, client_time of (iteration, key, group) within
    min_step..max_step, downsampled to `max_points` keeping bucket min/max."""
    from .reads import HttpReader, LocalReader

    params: dict[str, Any] = {
        "key": key,
        "group": group,
        "max_points": max_points,
        "min_step": min_step,
        "max_step": max_step,
    }
    path = f"/api/v1/iterations/{iteration_id}/metric-history"

    def remote(reader: HttpReader, at: Acked) -> pa.Table:
        return reader._arrow(path, params, at)

    def local(store: EmbeddedStore) -> pa.Table:
        from deardiary.projections.queries.series_window import window

        conn = store.store.reader()
        try:
            return window(conn, iteration_id, key, min_step, max_step, max_points, group)
        finally:
            conn.close()

    reader = client.reader
    at = client._written()
    if isinstance(reader, HttpReader):
        return remote(reader, at)
    if isinstance(reader, LocalReader):
        return reader.read(remote, local, at)
    raise InvalidArgument("metric history needs a server (query_url=...) or a data folder")
