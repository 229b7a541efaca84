"""DearDiary: event-sourced ML experiment tracking.

import deardiary as dd
c = dd.connect("path/to/folder")          # or "http://127.0.0.1:9000"
with c.start_iteration(project="p", experiment="e", params={"lr": 0.01}) as it:
    it.log_metric("loss", 0.5)
c.sql("SELECT * FROM last_metrics")       # a pyarrow.Table
"""

from deardiary.schemas.errors import DearDiaryError as ClientError
from deardiary.schemas.events import IterationStatus

from .buffer import EventBuffer
from .capture import OutputCapture
from .client import Client, connect, restore
from .environment import capture_environment, restore_environment
from .iteration import Iteration
from .shipper import Shipper
from .spool import Spool, default_spool_dir
from .transport import HttpTransport, LocalTransport, Transport

__all__ = [
    "Client",
    "ClientError",
    "EventBuffer",
    "HttpTransport",
    "Iteration",
    "IterationStatus",
    "LocalTransport",
    "OutputCapture",
    "Shipper",
    "Spool",
    "Transport",
    "capture_environment",
    "connect",
    "default_spool_dir",
    "restore",
    "restore_environment",
]
