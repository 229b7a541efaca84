"""`deardiary serve --broker kafka://...`: the gateway appends to Kafka, the query service
reads the workers' published partition exports; /readyz compares the two.

With `--auth` the same middleware, ingest authoriser, auth routes and SQL scoping as in
embedded mode run over the exports view: users, tokens and grants are events on the
Kafka log, folded by the workers like everything else. Where embedded mode "catches up
with the log" (an id the projections do not show yet, an admin route, a parent of a
batch), this server asks the broker for the log's end and waits, holding no thread,
until the workers have published up to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.auth.identity import Identity
from deardiary.services.auth.middleware import current_username, scoper
from deardiary.services.auth.secrets import load_signing_key
from deardiary.services.gateway.parents import IngestParents
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.log import LogRecord
from deardiary.services.log.kafka import KafkaEventLog
from deardiary.services.query.context import QueryContext
from deardiary.services.query.sandbox import SqlSandbox
from deardiary.services.served_app import ApiServer
from deardiary.services.server import utc_now
from deardiary.services.settings import ServerSettings
from deardiary.services.status import LagClock, Readiness, published_readiness


class KafkaQueryContext(QueryContext):
    """Reads wait only for the offsets they name (the exports lag by design); catching up
    -- "everything appended before this call" -- asks the broker for the log's end."""

    async def catch_up(self) -> None:
        if self.log_end is None:
            return
        await self.wait(await self.log_end.since(time.monotonic()))


class KafkaServer(ApiServer):
    def __init__(
        self,
        broker_url: str,
        data: Path,
        lost_after_s: float = 120.0,
        settings: ServerSettings | None = None,
        auth: bool = False,
        exports: str | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.auth = auth
        self.log = KafkaEventLog.from_url(broker_url)
        self.data = Path(data)
        self.view = ExportsView(Path(data), exports=exports)
        self.sandbox = SqlSandbox(
            self.view,
            self.settings,
            scoper=scoper if auth else None,
            caller=current_username if auth else None,
        )
        self._lag_clock = LagClock()
        self.artifacts = FsArtifactStore(Path(data) / "artifacts")
        self.ctx = KafkaQueryContext(
            reader=self.view.reader,
            progress=self.view,
            artifacts=self.artifacts,
            clock=utc_now,
            lost_after_s=lost_after_s,
            scoper=scoper if auth else None,
            max_wait_s=self.settings.max_wait_s,
            end_offsets=self.log.end_offsets,  # a min_offset beyond it is refused at once
            catch_up_to_end=False,  # the exports lag by design: waits need an offset
            read_threads=self.settings.read_threads,
            read_per_caller=self.settings.read_per_caller,
        )
        # Ingest's own lookups (parents, params, permissions), never behind slow reads.
        self.ingest_checks = ThreadPoolExecutor(2, "deardiary-ingest-checks")
        self.parents = IngestParents(self.view.reader, self.ctx.catch_up, self.ingest_checks)
        key_file = self.settings.auth_key_file or str(self.data / "auth.key")
        self.identity = Identity(load_signing_key(Path(key_file)), self.view.reader)

    def append(self, envelopes: Sequence[Envelope]) -> list[LogPosition]:
        return self.log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envelopes])

    def readiness(self) -> Readiness:
        """The log's end against the offsets the view holds (its thread follows the
        manifests)."""
        return published_readiness(
            self.log.end_offsets,
            self.view.applied(),
            self.view.published(),
            self.view.reader,
            self._lag_clock,
            self.settings.ready_max_lag_s,
        )

    def close(self) -> None:
        self.ingest_checks.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()
        self.log.close()
        self.view.close()
