"""`deardiary serve --broker kafka://...`: the gateway appends to Kafka, the query service
reads the workers' published partition exports; /readyz compares the two.

With `--auth` the same middleware, ingest authoriser, auth routes and SQL scoping as in
embedded mode run over the exports view: users, tokens and grants are events on the
Kafka log, folded by the workers like everything else. Where embedded mode "catches up
with the log" (an id the projections do not show yet, an admin route, a parent of a
batch), this server asks the broker for the log's end and waits, holding no thread,
until the workers have published up to it.

Signing in while the exports lag the log (a query service started before the workers
published, a worker rebuilding a store, a stalled worker): a credential the exports do
not show yet may still be on the log, so it answers 503 UNAVAILABLE with Retry-After and
the exports' progress, as embedded mode does while it rebuilds -- not 401, which tells the
real user their password is wrong and counts their retries as guesses. Whether the
exports lag is judged against the log's end as a thread of its own last probed it
(ExportsLag), never by a broker call per failed credential.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.events.access import AccessEvent
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


LOG_END_EVERY_S = 1.0
"""How often a query service with auth on asks the broker for the log's end."""
SETTLED_S = 2.0
"""A credential not in the exports is wrong (401) once they hold everything the log held
this long ago; while they lag further it is "retry soon" (503). Exports lag the log by a
publish or two by design: comparing with the newest end would answer 503 to every wrong
credential under ingest."""


class ExportsLag:
    """Whether the exports may still lack a user or token the log holds, answered without
    a broker call (a bad token must not cost one): the log's end is probed every
    LOG_END_EVERY_S by a thread of its own, and the users' and tokens' events this server
    appends are noted as it appends them (a user it just created is waited for at once)."""

    def __init__(
        self,
        view: ExportsView,
        probe: Callable[[], dict[int, int]],
        every_s: float = LOG_END_EVERY_S,
        settled_s: float = SETTLED_S,
    ) -> None:
        self.view, self._probe = view, probe
        self.every_s, self.settled_s = every_s, settled_s
        self._ends: list[tuple[float, dict[int, int]]] = []  # (monotonic, ends), oldest first
        self._own: dict[int, int] = {}  # next offsets past this server's access events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exports-lag", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                ends = self._probe()
            except Exception:  # the broker away: the last ends known stay
                ends = None
            if ends is not None:
                now = time.monotonic()
                known = [*self._ends, (now, dict(ends))]
                old = [i for i, (t, _) in enumerate(known) if t <= now - self.settled_s]
                self._ends = known[old[-1] :] if old else known  # from the newest settled one
            if self._stop.wait(self.every_s):
                return

    def noted(self, envelopes: Sequence[Envelope], positions: Sequence[LogPosition]) -> None:
        for envelope, pos in zip(envelopes, positions, strict=True):
            if isinstance(envelope.body, AccessEvent):
                self._own[pos.partition] = max(self._own.get(pos.partition, 0), pos.offset + 1)

    def settled(self) -> dict[int, int]:
        """What the log held SETTLED_S ago (as soon as probed; just started: the first
        probe), and this server's own access events."""
        ends = self._ends  # replaced, never changed in place
        cutoff = time.monotonic() - self.settled_s
        old = [e for t, e in ends if t <= cutoff] or [e for _, e in ends[:1]]
        target = dict(old[-1]) if old else {}
        for p, o in list(self._own.items()):  # appends may add to it meanwhile
            target[p] = max(target.get(p, 0), o)
        return target

    def incomplete(self) -> str | None:
        """Why a credential not found may still come (None: it is wrong)."""
        if not self.view.published():
            return "no worker has published the exports this server reads yet"
        applied, target = self.view.applied(), self.settled()
        behind = sum(max(0, o - applied.get(p, 0)) for p, o in target.items())
        if not behind:
            return None
        total = sum(target.values())
        return (
            f"this server's exports are {behind:,} records behind the log"
            f" ({(total - behind) / total:.0%} published)"
        )

    def close(self) -> None:
        self._stop.set()


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
        self.exports_lag = ExportsLag(self.view, self.log.end_offsets) if auth else None
        self.identity = Identity(
            load_signing_key(Path(key_file)),
            self.view.reader,
            incomplete=self.exports_lag.incomplete if self.exports_lag else lambda: None,
        )

    def append(self, envelopes: Sequence[Envelope]) -> list[LogPosition]:
        positions = self.log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envelopes])
        if self.exports_lag is not None:
            self.exports_lag.noted(envelopes, positions)
        return positions

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
        if self.exports_lag is not None:
            self.exports_lag.close()
        self.ingest_checks.shutdown(wait=False, cancel_futures=True)
        self.sandbox.close()
        self.log.close()
        self.view.close()
