"""The read side of the client: the same questions, to a local data folder or over HTTP.

Local reads open the folder's projections for the duration of one call (another
process of the sweep may need them next) and catch up with the log first. HTTP reads
pass the client's last acknowledged offset, so the server answers only once this
client's own writes are visible (read-your-writes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pyarrow as pa

from deardiary.schemas.errors import InvalidArgument

from .transport import error_from_response

if TYPE_CHECKING:
    from deardiary.services.embedded import EmbeddedStore

ARROW_STREAM = "application/vnd.apache.arrow.stream"


class Reader(Protocol):
    def sql(self, query: str, min_offset: int) -> pa.Table: ...

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, min_offset: int
    ) -> pa.Table: ...

    def get_json(self, path: str, params: dict[str, Any], min_offset: int) -> Any: ...

    def close(self) -> None: ...


class LocalReader:
    def __init__(self, data_dir: str | Path, timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout

    def _with_store(self, fn: Callable[[EmbeddedStore], pa.Table]) -> pa.Table:
        from deardiary.services.embedded import EmbeddedStore

        with EmbeddedStore.open_when_free(self.data_dir, self.timeout) as store:
            store.catch_up()
            return fn(store)

    def sql(self, query: str, min_offset: int) -> pa.Table:
        return self._with_store(lambda s: s.sql(query))

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, min_offset: int
    ) -> pa.Table:
        from deardiary.projections.queries.metric_series import series

        return self._with_store(lambda s: series(s.store.reader(), iteration_id, key, max_points))

    def get_json(self, path: str, params: dict[str, Any], min_offset: int) -> Any:
        raise InvalidArgument(f"{path} is served by the HTTP API; connect to a server for it")

    def close(self) -> None:
        pass


class HttpReader:
    def __init__(self, client: httpx.Client, token: Callable[[], str | None]) -> None:
        self.http = client
        self.token = token

    def headers(self, accept: str = "application/json") -> dict[str, str]:
        token = self.token()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {"Accept": accept, **auth}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON call (used by the admin methods); errors raised as typed errors."""
        import msgspec

        response = self.http.request(method, path, headers=self.headers(), **kwargs)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        return msgspec.json.decode(response.content)

    def _get(self, path: str, params: dict[str, Any], min_offset: int, accept: str) -> bytes:
        query = {k: v for k, v in params.items() if v is not None}
        if min_offset >= 0:
            query["min_offset"] = str(min_offset)
        response = self.http.get(path, params=query, headers=self.headers(accept))
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        return response.content

    def _arrow(self, path: str, params: dict[str, Any], min_offset: int) -> pa.Table:
        body = self._get(path, params, min_offset, ARROW_STREAM)
        return pa.ipc.open_stream(body).read_all()

    def sql(self, query: str, min_offset: int) -> pa.Table:
        return self._arrow("/api/v1/sql", {"q": query}, min_offset)

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, min_offset: int
    ) -> pa.Table:
        return self._arrow(
            f"/api/v1/iterations/{iteration_id}/metric-history",
            {"key": key, "max_points": max_points},
            min_offset,
        )

    def get_json(self, path: str, params: dict[str, Any], min_offset: int) -> Any:
        import msgspec

        return msgspec.json.decode(self._get(path, params, min_offset, "application/json"))

    def close(self) -> None:
        self.http.close()


class NoReader:
    """Reads for a client that only produces to Kafka: they go to a query service."""

    def __init__(self, target: str) -> None:
        self.target = target

    def _refuse(self) -> InvalidArgument:
        return InvalidArgument(
            f"{self.target} is a log, not a query service: pass query_url='http://...'"
        )

    def sql(self, query: str, min_offset: int) -> pa.Table:
        raise self._refuse()

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, min_offset: int
    ) -> pa.Table:
        raise self._refuse()

    def get_json(self, path: str, params: dict[str, Any], min_offset: int) -> Any:
        raise self._refuse()

    def close(self) -> None:
        pass
