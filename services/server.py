"""`deardiary serve` in embedded mode: gateway, in-process projector and query service in
one process over one data folder.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.typedefs import Middleware

from deardiary.projections.changes import Changes
from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.errors import InvalidArgument
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.auth.identity import Identity
from deardiary.services.auth.middleware import (
    current_username,
    past_scoper,
    scoper,
)
from deardiary.services.auth.secrets import load_signing_key
from deardiary.services.discovery import ServerInfo, new_local_token, publish, withdraw
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.gateway.parents import IngestParents
from deardiary.services.log import LogRecord
from deardiary.services.query.as_of import AsOfCache
from deardiary.services.query.context import ProjectorProgress, QueryContext
from deardiary.services.query.sandbox import SqlSandbox
from deardiary.services.query.sql_relations import StoreRelations
from deardiary.services.served_app import ApiServer, applied_target
from deardiary.services.settings import ServerSettings
from deardiary.services.status import (
    Readiness,
    damage_guard,
    embedded_readiness,
)

_log = logging.getLogger("deardiary.server")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def check_bind(host: str, allow_remote: bool, auth: bool = False) -> None:
    """Without auth, refuse to listen beyond loopback unless explicitly overridden."""
    if auth:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_remote:
        raise InvalidArgument(
            f"refusing to serve on {host} without authentication; bind 127.0.0.1 or pass "
            "--allow-remote-without-auth if this network is trusted"
        )


class EmbeddedServer(ApiServer):
    """The parts of an embedded server and the projector thread that follows the log."""

    def __init__(
        self,
        data: str | Path,
        lost_after_s: float = 120.0,
        auth: bool = False,
        settings: ServerSettings | None = None,
    ) -> None:
        self.auth = auth
        self.settings = settings or ServerSettings()
        self.embedded = EmbeddedStore.open_when_free(
            data, timeout=10.0, hot_points_limit=self.settings.hot_points_limit
        )
        assert self.embedded.log is not None and self.embedded.projector is not None
        self.log = self.embedded.log
        self.log.keep_unread()  # the projector reads what the gateway appended from memory
        self.projector = self.embedded.projector
        self.stop_event, self.wake = threading.Event(), threading.Event()
        self.artifacts = FsArtifactStore(self.embedded.paths.artifacts)
        progress = ProjectorProgress(self.embedded.store.next_offsets)
        changes = Changes()  # what each batch wrote, for the MLflow search's rendered runs
        self.embedded.store.on_commit = changes.record
        self.projector.add_listener(progress.on_applied)
        self.projector.linger_s = self.settings.projector_linger_ms / 1000
        self.projector.hurry = lambda: progress.waiting() > 0  # reads waiting for writes
        progress.on_wait = self.projector.hurry_now  # a read that starts waiting: at once
        self.as_of = AsOfCache(
            self.log,
            Path(self.settings.as_of_cache_dir or self.embedded.paths.root / "as-of-cache"),
            self.settings.as_of_cache_mb * 1024 * 1024,
            self.settings.hot_points_limit,
        )
        self.ctx = QueryContext(
            reader=self.embedded.store.reader,
            progress=progress,
            artifacts=self.artifacts,
            clock=utc_now,
            lost_after_s=lost_after_s,
            scoper=scoper if auth else None,
            end_offsets=self.log.end_offsets,
            max_wait_s=self.settings.max_wait_s,
            read_threads=self.settings.read_threads,
            read_per_caller=self.settings.read_per_caller,
            as_of=self.as_of,
            as_of_scoper=past_scoper if auth else None,
            changes=changes,
        )
        self.sandbox = SqlSandbox(
            StoreRelations(self.embedded.store),
            self.settings,
            scoper=scoper if auth else None,
            caller=current_username if auth else None,
        )
        self.identity = Identity(
            load_signing_key(
                Path(self.settings.auth_key_file or self.embedded.paths.root / "auth.key")
            ),
            self.embedded.store.reader,
            incomplete=self._rebuilding,
        )
        self.identity.local_admin_token = self.local_token = new_local_token()
        self._thread = threading.Thread(target=self._follow, name="projector", daemon=True)
        # A last compaction at close takes seconds with a full hot table; `deardiary serve`
        # skips it to stop promptly (the projector compacts when it next idles past the limit).
        self.compact_at_close = True
        # Ingest's own lookups (parents, params, permissions): never behind slow reads.
        self.ingest_checks = ThreadPoolExecutor(2, "deardiary-ingest-checks")
        self.parents = IngestParents(
            self.embedded.store.reader,
            self._caught_up,
            self.ingest_checks,
            absent=self.embedded.store.certainly_absent,
        )

    def _rebuilding(self) -> str | None:
        rebuild = self.embedded.rebuild
        if rebuild is None or not rebuild.running:
            return None
        done = rebuild.progress.fraction
        return f"the server is rebuilding its tables from the log ({done:.0%} done)"

    def _follow(self) -> None:
        self.projector.run(self.stop_event, self.wake)

    def on_appended(self, positions: list[LogPosition]) -> None:
        self.wake.set()

    def append(self, envelopes: Sequence[Envelope]) -> list[LogPosition]:
        positions = self.log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envelopes])
        self.wake.set()
        return positions

    def append_applied(self, envelopes: Sequence[Envelope]) -> None:
        """Append, then block until the projections show it (set-up before serving)."""
        self.projector.wait_for(applied_target(self.append(envelopes)), self.ctx.max_wait_s)

    async def _caught_up(self) -> None:
        await self.ctx.wait({})

    def guards(self) -> list[Middleware]:
        return [damage_guard(self.embedded.store.damage)]

    def readiness(self) -> Readiness:
        return embedded_readiness(
            self.projector,
            self.embedded.store.reader,
            self.embedded.rebuild,
            self.settings.ready_max_lag_s,
            self.embedded.store.damage,
        )

    def start(self) -> None:
        """Catch up, then follow the log in the projector thread. A rebuild (damaged
        projections) catches up in that thread instead, while the server already answers."""
        if self.embedded.rebuild is None:
            self.projector.catch_up()
        self._thread.start()

    def publish(self, url: str) -> None:
        """Tell local readers of the folder where to ask (<data>/server.json)."""
        info = ServerInfo(url=url, pid=os.getpid(), token=self.local_token, auth=self.auth)
        publish(self.embedded.paths.root, info)

    def close(self) -> None:
        self.ingest_checks.shutdown(wait=False, cancel_futures=True)
        self.as_of.close()
        withdraw(self.embedded.paths.root)
        self.sandbox.close()
        self.stop_event.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        try:
            if self.compact_at_close:
                self.embedded.store.compact()
        except Exception:  # damaged meanwhile (a segment gone): rebuilt at the next start
            _log.exception("compaction at shutdown failed")
        self.embedded.close()


@contextmanager
def embedded_server(
    data: str | Path,
    lost_after_s: float = 120.0,
    auth: bool = False,
    settings: ServerSettings | None = None,
) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(data, lost_after_s=lost_after_s, auth=auth, settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.close()
