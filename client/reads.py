"""The read side of the client: the same questions, to a local data folder or over HTTP.

Local reads go to the server that owns the folder, when one runs; otherwise they open
the folder's projections for the duration of one call (another process of the sweep may
need them next) and catch up with the log first. HTTP reads pass the client's last
acknowledged offset, so the server answers only once this client's own writes are
visible (read-your-writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from deardiary.schemas.errors import InvalidArgument, Unavailable

from .pool import ConnectFailed, HttpPool
from .transport import ARROW_STREAM as ARROW_STREAM
from .transport import Acked
from .transport import HttpReader as HttpReader  # where it lives: every HTTP client has one

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from deardiary.services.embedded import EmbeddedStore  # local-folder mode only

T = TypeVar("T")


class Reader(Protocol):
    def sql(self, query: str, at: Acked) -> pa.Table: ...

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, at: Acked
    ) -> pa.Table: ...

    def get_json(self, path: str, params: dict[str, Any], at: Acked) -> Any: ...

    def close(self) -> None: ...


class LocalReader:
    """Reads of a data folder. While `deardiary serve` owns the folder (its
    ``server.json`` names a live process), they go to that server over HTTP, waiting for
    the log's current end (read-your-writes: a write just made into the folder is seen);
    otherwise the folder's projections are opened for the duration of one call (another
    process of the sweep may need them next) and caught up with the log first."""

    def __init__(self, data_dir: str | Path, timeout: float = 30.0) -> None:
        from pathlib import Path  # local-folder mode only: not at `import deardiary`

        self.data_dir = Path(data_dir)
        self.timeout = timeout

    def read(
        self,
        remote: Callable[[HttpReader, Acked], T],
        local: Callable[[EmbeddedStore], T],
        at: Acked | None = None,
    ) -> T:
        """`remote(reader, at)` through the folder's server if one runs, else
        `local(store)` on the opened folder (waiting while a short-lived reader holds it)."""
        deadline = time.monotonic() + self.timeout
        while True:
            answered, answer = self._via_server(remote, at or {})
            if answered:
                return cast(T, answer)
            store_type = _embedded_store()
            try:
                store = store_type(self.data_dir, create_log=False)
            except Unavailable:  # held: a short-lived reader, or a server starting up
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            with store:
                store.catch_up()
                return local(store)

    def _via_server(
        self, remote: Callable[[HttpReader, Acked], T], at: Acked
    ) -> tuple[bool, T | None]:
        from deardiary.services.discovery import find_server

        found = find_server(self.data_dir)
        if found is None:
            return False, None
        token = found.token
        reader = HttpReader(HttpPool(found.url, timeout=self.timeout), lambda: token)
        try:
            return True, remote(reader, {**at, 0: max(at.get(0, -1), self._last_offset())})
        except ConnectFailed:
            return False, None  # a live PID but no server there (reused): open the folder
        finally:
            reader.close()

    def _last_offset(self) -> int:
        """The offset of the log's last record (-1 when empty or absent)."""
        from deardiary.services.log.sqlite import SqliteEventLog

        path = self.data_dir / "log.db"
        if not path.exists():
            return -1
        log = SqliteEventLog(str(path))
        try:
            return sum(log.end_offsets().values()) - 1
        finally:
            log.close()

    def sql(self, query: str, at: Acked) -> pa.Table:
        return self.read(lambda r, to: r.sql(query, to), lambda s: s.sql(query), at)

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, at: Acked
    ) -> pa.Table:
        def local(store: EmbeddedStore) -> pa.Table:
            from deardiary.projections.queries.metric_series import series

            return series(store.store.reader(), iteration_id, key, max_points)

        return self.read(
            lambda r, to: r.metric_history(iteration_id, key, max_points, to), local, at
        )

    def get_json(self, path: str, params: dict[str, Any], at: Acked) -> Any:
        raise InvalidArgument(f"{path} is served by the HTTP API; connect to a server for it")

    def close(self) -> None:
        pass


class NoReader:
    """Reads for a client that only produces to Kafka: they go to a query service."""

    def __init__(self, target: str) -> None:
        self.target = target

    def _refuse(self) -> InvalidArgument:
        return InvalidArgument(
            f"{self.target} is a log, not a query service: pass query_url='http://...'"
        )

    def sql(self, query: str, at: Acked) -> pa.Table:
        raise self._refuse()

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, at: Acked
    ) -> pa.Table:
        raise self._refuse()

    def get_json(self, path: str, params: dict[str, Any], at: Acked) -> Any:
        raise self._refuse()

    def close(self) -> None:
        pass


def _pyarrow() -> Any:
    """pyarrow, imported when a table is first read (logging never needs it)."""
    try:
        import pyarrow as pa
        import pyarrow.ipc
    except ImportError as exc:
        raise InvalidArgument(
            "reading tables needs pyarrow: pip install 'deardiary[arrow]'"
        ) from exc
    return pa


def _embedded_store() -> type[EmbeddedStore]:
    """Local-folder reads open the folder with the server's own store (DuckDB)."""
    try:
        from deardiary.services.embedded import EmbeddedStore
    except ImportError as exc:
        raise InvalidArgument(
            f"reading a local folder needs the server extra ({exc.name} is missing):"
            " pip install 'deardiary[server]'"
        ) from exc
    return EmbeddedStore
