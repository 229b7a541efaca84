"""A client's logging machinery -- spool, buffer, shipper and environment snapshot --
made when the client first writes.

Why not at `connect`: a script that only reads (queries, SQL, the registry) needs none
of it, and `import deardiary` and `dd.connect` should not pay for it: these modules (the
buffer's typed columns, the shipper, the spool, the snapshot and the event classes a
trial writes) are ~4-6 ms of `python -X importtime -c "import deardiary"`, a third of
the SDK's own share, and the shipper starts a thread. A client that never writes loads
none of them, starts no thread and makes no spool folder; records an earlier process
left in a spool folder are adopted by the next client of that folder that writes.
"""

from __future__ import annotations

from .buffer import EventBuffer
from .shipper import Shipper
from .snapshot import EnvironmentSnapshot
from .spool import Spool, default_spool_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from pathlib import Path

    from .transport import Transport


class Machinery:
    """What a writing client ships through; one per client, made once."""

    __slots__ = ("buffer", "shipper", "snapshot", "spool")

    def __init__(
        self,
        url: str,
        transport: Transport,
        *,
        actor: str,
        spool_dir: str | Path | None,
        max_buffer_points: int,
        flush_interval: float,
        heartbeat_interval: float,
        exit_timeout: float,
    ) -> None:
        self.spool = Spool(spool_dir or default_spool_dir(url))
        self.buffer = EventBuffer(self.spool, actor=actor, max_points=max_buffer_points)
        self.shipper = Shipper(
            self.buffer,
            transport,
            self.spool,
            flush_interval=flush_interval,
            heartbeat_interval=heartbeat_interval,
            exit_timeout=exit_timeout,
            target=url,
        )
        self.snapshot = EnvironmentSnapshot(self.buffer)
        # at close (or exit), iterations still running get their snapshot first
        self.shipper.before_close = self.snapshot.wait
