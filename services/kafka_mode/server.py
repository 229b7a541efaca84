"""`deardiary serve --broker kafka://...`: the gateway appends to Kafka, the query service
reads the workers' published partition exports; /readyz compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.artifacts.routes import ArtifactRoutes
from deardiary.services.gateway import gateway_part
from deardiary.services.gateway.parents import IngestParents
from deardiary.services.http import build_app
from deardiary.services.http.host_check import host_check
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.kafka_mode.partitions import read_manifests
from deardiary.services.log import LogRecord
from deardiary.services.log.kafka import KafkaEventLog
from deardiary.services.query.context import QueryContext
from deardiary.services.query.sandbox import SqlSandbox, install
from deardiary.services.query.table import query_part
from deardiary.services.server import artifact_part, utc_now
from deardiary.services.settings import ServerSettings
from deardiary.services.status import LagClock, Readiness, published_readiness, readiness_part
from deardiary.services.web.routes import mount_web


class KafkaServer:
    def __init__(
        self,
        broker_url: str,
        data: Path,
        lost_after_s: float = 120.0,
        settings: ServerSettings | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.log = KafkaEventLog.from_url(broker_url)
        self.data = Path(data)
        self.view = ExportsView(Path(data))
        self.sandbox = SqlSandbox(self.view, self.settings)
        self._lag_clock = LagClock()
        self.artifacts = FsArtifactStore(Path(data) / "artifacts")
        self.ctx = QueryContext(
            reader=self.view.reader,
            progress=self.view,
            artifacts=self.artifacts,
            clock=utc_now,
            lost_after_s=lost_after_s,
            max_wait_s=self.settings.max_wait_s,
            end_offsets=self.log.end_offsets,  # a min_offset beyond it is refused at once
            catch_up_to_end=False,  # the exports lag by design: waits need an offset
            read_threads=self.settings.read_threads,
            read_per_caller=self.settings.read_per_caller,
        )
        self.parents = IngestParents(self.view.reader, self._caught_up)

    async def _caught_up(self) -> None:
        await self.ctx.wait({})

    def append(self, envelopes: Sequence[Envelope]) -> list[LogPosition]:
        return self.log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envelopes])

    def app(self, bind_host: str | None = None) -> web.Application:
        """No auth in this mode: only loopback Host names, `bind_host` and the
        allowed_hosts setting are answered (DNS rebinding)."""
        app = build_app(
            [
                gateway_part(self.log, checker=self.parents),
                query_part(self.ctx),
                artifact_part(
                    ArtifactRoutes(self.ctx, self.append, lambda _r: "", checker=self.parents)
                ),
                readiness_part(self.readiness),
            ],
            middlewares=[host_check(bind_host, self.settings.allowed_hosts.split(","))],
        )
        return mount_web(install(app, self.sandbox))

    def readiness(self) -> Readiness:
        """The log's end against the offsets the workers last published."""
        self.view.refresh(force=True)
        return published_readiness(
            self.log.end_offsets,
            dict(self.view.offsets),
            bool(read_manifests(self.data)),
            self.view.reader,
            self._lag_clock,
            self.settings.ready_max_lag_s,
        )

    def close(self) -> None:
        self.sandbox.close()
        self.log.close()
        self.view.close()
