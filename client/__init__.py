"""DearDiary: event-sourced ML experiment tracking.

import deardiary as dd
c = dd.connect("path/to/folder")          # or "http://127.0.0.1:9000"
with c.start_iteration(project="p", experiment="e", params={"lr": 0.01}) as it:
    it.log_metric("loss", 0.5)
c.sql("SELECT * FROM last_metrics")       # a pyarrow.Table

Importing this package loads what `connect` needs (msgspec, the HTTP pool and
transport); the logging machinery and the event classes a trial writes load with a
client's first write (client/machinery.py), and the other event classes, the SDK's
media, checkpoint, management and system-metrics code (Client's and Iteration's
mixins), Arrow, DuckDB and the server's modules when first used, so a trial process of
a sweep starts fast and a script that only reads loads no logging code.
"""

from __future__ import annotations

import gc

# What this import creates (msgspec's and the event schemas' types, the SDK's classes and
# functions: ~6,000 objects over a bare interpreter's ~5,000, nearly all alive until the
# process ends) would make the cyclic garbage collector run every 700 of them,
# traversing the young ones again and again, and then traverse all of them again in the
# first young and middle collections after the import and in each full collection,
# the interpreter's exit among them (two or three: ~8 ms of a sweep trial's CPU here,
# for nothing to collect). So the collector is paused while they are created and, if it
# was on, the objects alive when the import ends -- modules, classes, functions: the
# interpreter's, msgspec's, this package's and those of what was imported before it --
# are frozen (gc.freeze: kept out of every later collection; objects made afterwards
# are collected as usual). What was already garbage is collected first, so nothing
# unreachable is frozen; a program that wants those objects collected again calls
# gc.unfreeze(). With the collector off (the program turned it off) nothing changes.
_collecting = gc.isenabled()
if _collecting:
    gc.collect()  # before this import's objects exist: it traverses only what was there
gc.disable()
try:
    from deardiary.schemas.errors import DearDiaryError as ClientError

    from .client import Client, connect, restore
    from .version import __version__
finally:
    if _collecting:
        gc.freeze()
        gc.enable()

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from typing import Any

    from deardiary.schemas.events import IterationStatus

    from .buffer import EventBuffer
    from .capture import OutputCapture
    from .environment import capture_environment, restore_environment
    from .handler import DiaryHandler
    from .iteration import Iteration
    from .shipper import Shipper
    from .spool import Spool, default_spool_dir
    from .transport import HttpTransport, LocalTransport
    from .transport_protocol import Transport

# Names used less often, imported on first use (PEP 562).
_LAZY = {
    "DiaryHandler": "handler",
    "EventBuffer": "buffer",
    "HttpTransport": "transport",
    "Iteration": "iteration",
    "IterationStatus": "iteration",
    "LocalTransport": "transport",
    "OutputCapture": "capture",
    "Shipper": "shipper",
    "Spool": "spool",
    "Transport": "transport_protocol",
    "capture_environment": "environment",
    "default_spool_dir": "spool",
    "restore_environment": "environment",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deardiary' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Client",
    "ClientError",
    "DiaryHandler",
    "EventBuffer",
    "HttpTransport",
    "Iteration",
    "IterationStatus",
    "LocalTransport",
    "OutputCapture",
    "Shipper",
    "Spool",
    "Transport",
    "__version__",
    "capture_environment",
    "connect",
    "default_spool_dir",
    "restore",
    "restore_environment",
]
