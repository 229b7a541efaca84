"""Readiness: is the projector running, and how far behind the log are the projections?

`/healthz` says the process answers (liveness); `/readyz` says whether reads are current:
200 when the projector runs and lags the log by at most `ready_max_lag_s`, 503
otherwise, with the same JSON either way. `deardiary status --data DIR` prints it -- from
the server that owns the folder, or, when none does, from the folder itself.

Lag in seconds is the age of the oldest record not yet applied (Kafka consumers' "time
lag"), read from the log where that is cheap (embedded); in Kafka mode the query service
only sees the workers' published offsets, so it is the time since the log first showed
an end the workers have not reached yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from deardiary.pool import HttpPool
from deardiary.projections.integrity import inspect
from deardiary.schemas.errors import Unavailable
from deardiary.schemas.ids import now_us
from deardiary.services.http import Endpoint, RoutePart, operation
from deardiary.services.http.openapi import json_content
from deardiary.services.log import EventLog
from deardiary.services.projector import Projector
from deardiary.services.rebuild import Rebuild

REBUILT_AT_START = "`deardiary serve` rebuilds the projections from the log at its next start"


class Readiness(msgspec.Struct, kw_only=True):
    """What /readyz answers and `deardiary status` prints."""

    ready: bool
    state: str  # running, retrying, rebuilding, stopped
    applied: dict[int, int]  # next offset per partition
    end: dict[int, int]  # the log's end per partition
    lag_events: int
    lag_seconds: float
    parked_events: int
    last_error: str = ""
    rebuild: dict[str, Any] | None = None  # cause, moved_to, progress of a rebuild


def _lag(applied: dict[int, int], end: dict[int, int]) -> int:
    return sum(max(0, o - applied.get(p, 0)) for p, o in end.items())


def _parked(reader: Callable[[], duckdb.DuckDBPyConnection]) -> int:
    conn = reader()
    try:
        return int(conn.execute("SELECT count(*) FROM parked_events").fetchall()[0][0])
    finally:
        conn.close()


def record_age_s(log: EventLog, applied: dict[int, int]) -> float:
    """Seconds since the oldest record not yet applied was appended (0 when none is)."""
    oldest: int | None = None
    for partition in log.partitions():
        first = log.read({partition: applied.get(partition, 0)}, 1, 0.0)
        for pos, _ in first:
            if pos.partition == partition and (oldest is None or pos.log_time < oldest):
                oldest = pos.log_time
    return 0.0 if oldest is None else max(0.0, (now_us() - oldest) / 1e6)


def embedded_readiness(
    projector: Projector,
    reader: Callable[[], duckdb.DuckDBPyConnection],
    rebuild: Rebuild | None,
    max_lag_s: float,
    damage: Callable[[], str] = str,
) -> Readiness:
    status = projector.status()
    state, error = status.state, status.last_error
    damaged = damage()
    if damaged:
        error = f"damaged: {damaged}; {REBUILT_AT_START}"
    lag = _lag(status.applied, status.end) if status.end else status.lag_events
    seconds = 0.0
    if lag:
        try:
            seconds = record_age_s(projector.log, status.applied)
        except Exception as exc:  # the log cannot be read: say so, do not fail the probe
            error = error or f"log: {exc}"
    rebuilding = rebuild is not None and rebuild.running
    if rebuilding and state == "running":
        state = "rebuilding"
    return Readiness(
        ready=state == "running" and seconds <= max_lag_s and bool(status.end) and not damaged,
        state=state,
        applied=status.applied,
        end=status.end,
        lag_events=lag,
        lag_seconds=round(seconds, 3),
        parked_events=_parked(reader),
        last_error=error,
        rebuild=rebuild.report() if rebuild is not None else None,
    )


class LagClock:
    """When did the log first show an end the projections have not reached? (Kafka mode:
    the query service cannot read record times cheaply.)"""

    def __init__(self) -> None:
        self._seen: list[tuple[float, dict[int, int]]] = []

    def behind_s(self, applied: dict[int, int], end: dict[int, int]) -> float:
        now = time.monotonic()
        if not self._seen or self._seen[-1][1] != end:
            self._seen.append((now, dict(end)))
            del self._seen[:-1000]
        self._seen = [(t, e) for t, e in self._seen if _lag(applied, e)]
        return now - self._seen[0][0] if self._seen else 0.0


def published_readiness(
    end_offsets: Callable[[], dict[int, int]],
    applied: dict[int, int],
    published: bool,
    reader: Callable[[], duckdb.DuckDBPyConnection],
    clock: LagClock,
    max_lag_s: float,
) -> Readiness:
    """Kafka mode: the log's end against the offsets the workers published."""
    try:
        end = end_offsets()
    except Exception as exc:
        return Readiness(
            ready=False,
            state="retrying",
            applied=applied,
            end={},
            lag_events=0,
            lag_seconds=0.0,
            parked_events=_parked(reader),
            last_error=f"log: {exc}",
        )
    seconds = clock.behind_s(applied, end)
    state = "running" if published else "stopped"
    return Readiness(
        ready=state == "running" and seconds <= max_lag_s,
        state=state,
        applied=applied,
        end=end,
        lag_events=_lag(applied, end),
        lag_seconds=round(seconds, 3),
        parked_events=_parked(reader),
        last_error="" if published else "no worker has published its partitions yet",
    )


def folder_readiness(projections: Path, log: EventLog | None) -> Readiness:
    """A folder no server owns: its stored offsets against its log, read-only. Ready
    when the projections are sound and have applied the whole log."""
    found = inspect(projections)
    end = log.end_offsets() if log is not None else dict(found.offsets)
    lag = _lag(found.offsets, end)
    seconds = record_age_s(log, found.offsets) if log is not None and lag else 0.0
    return Readiness(
        ready=not found.damage and lag == 0,
        state="stopped",
        applied=found.offsets,
        end=end,
        lag_events=lag,
        lag_seconds=round(seconds, 3),
        parked_events=found.parked,
        last_error=f"damaged: {found.damage}" if found.damage else "",
    )


def damage_guard(damage: Callable[[], str]) -> Middleware:
    """A request that fails because a projection file is gone (deleted while serving)
    answers UNAVAILABLE naming the file, rather than an opaque INTERNAL error or a
    "retry" that cannot help. Only failures pay for the check (a stat per file)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (duckdb.Error, OSError, Unavailable) as exc:  # OSError: pyarrow reading files
            cause = await asyncio.get_running_loop().run_in_executor(None, damage)
            if not cause:
                raise
            raise Unavailable(
                f"the projections are damaged: {cause}; {REBUILT_AT_START}",
                {"retryable": False, "cause": cause},
            ) from exc

    return guard


def readiness_part(compute: Callable[[], Readiness]) -> RoutePart:
    """GET /readyz (public, like /healthz)."""

    async def readyz(request: web.Request) -> web.Response:
        found = await asyncio.get_running_loop().run_in_executor(None, compute)
        return web.Response(
            body=msgspec.json.encode(found),
            status=200 if found.ready else 503,
            content_type="application/json",
        )

    (ref,), components = msgspec.json.schema_components(
        [Readiness], ref_template="#/components/schemas/{name}"
    )
    return RoutePart(
        "readiness",
        [
            Endpoint(
                "GET",
                "/readyz",
                readyz,
                operation(
                    "Readiness: the projector runs and the projections are caught up",
                    tag="meta",
                    responses={
                        "200": {"description": "ready", "content": json_content(ref)},
                        "503": {"description": "not ready", "content": json_content(ref)},
                    },
                ),
            )
        ],
        schemas=components,
    )


def _offsets_text(offsets: dict[int, int]) -> str:
    return ", ".join(f"partition {p}: {o}" for p, o in sorted(offsets.items())) or "-"


def folder_status(data: Path, timeout: float = 10.0) -> tuple[Readiness, str]:
    """The readiness of data folder `data` and where it came from: the server that owns
    the folder (its /readyz), or the folder itself when no server does."""
    from deardiary.services.discovery import find_server
    from deardiary.services.embedded import DataPaths
    from deardiary.services.log.sqlite import SqliteEventLog

    if not Path(data).is_dir():
        raise FileNotFoundError(f"no data folder at {data}")
    deadline = time.monotonic() + timeout
    while True:
        server = find_server(data)
        if server is not None:
            pool = HttpPool(server.url, timeout=timeout)
            try:
                answer = pool.get("/readyz")
                found = msgspec.json.decode(answer.content, type=Readiness)
                return found, f"the server at {server.url} (pid {server.pid})"
            except (Unavailable, msgspec.DecodeError):
                pass  # gone meanwhile: look at the folder
            finally:
                pool.close()
        paths = DataPaths(data)
        log = SqliteEventLog(str(paths.log)) if paths.log.exists() else None
        try:
            return folder_readiness(paths.projections, log), "the folder (no server owns it)"
        except Unavailable:  # held by a short-lived reader, or a server starting up
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
        finally:
            if log is not None:
                log.close()


class DiskPart(msgspec.Struct, frozen=True):
    """One part of a data folder and the bytes it takes."""

    name: str
    bytes: int
    moved_aside: bool = False


def disk_usage(data: Path) -> list[DiskPart]:
    """What a data folder holds on disk: the log (the source of truth), the projections
    (a cache of it), the artifacts, and each projections folder moved aside (damaged, or
    of an older format). Moved-aside folders are never deleted by us: they are kept for
    inspection and may be deleted by hand once the rebuild that replaced them is done,
    which is why status lists them -- a format change doubles the projections' size."""
    root = Path(data)
    parts = [
        DiskPart("log", sum(_size(p) for p in root.glob("log.db*"))),
        DiskPart("projections", _size(root / "projections")),
        DiskPart("artifacts", _size(root / "artifacts")),
    ]
    for moved in sorted(root.glob("projections.*")):
        if moved.is_dir():
            parts.append(DiskPart(moved.name, _size(moved), moved_aside=True))
    return parts


def _size(path: Path) -> int:
    """Bytes under `path` (a file or a folder); files vanishing meanwhile count 0."""
    files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
    total = 0
    for f in files:
        try:
            total += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:
            continue
    return total


def _human(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    size, unit = n / 1000, "KB"
    for bigger in ("MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.1f} {unit}"


def render_disk(parts: list[DiskPart]) -> str:
    main = ", ".join(f"{p.name} {_human(p.bytes)}" for p in parts if not p.moved_aside)
    lines = [f"{'disk:':<15}{main}\n"]
    for p in (p for p in parts if p.moved_aside):
        lines.append(
            f"{'moved aside:':<15}{p.name} {_human(p.bytes)} (kept for inspection; safe to"
            " delete once the rebuild is done)\n"
        )
    return "".join(lines)


def render_status(found: Readiness, source: str) -> str:
    lines = [
        ("state", f"{found.state} ({'ready' if found.ready else 'not ready'})"),
        ("applied", _offsets_text(found.applied)),
        ("log end", _offsets_text(found.end)),
        ("lag", f"{found.lag_events} events, {found.lag_seconds:.1f} s"),
        ("parked events", str(found.parked_events)),
        ("last error", found.last_error or "-"),
    ]
    if found.rebuild is not None:
        r = found.rebuild
        lines.append(
            (
                "rebuild",
                f"{100 * float(r['fraction']):.0f}% of {r['target_records']} records,"
                f" {r['records_per_s']} records/s; the damaged projections ({r['cause']})"
                f" are kept in {r['moved_to']}",
            )
        )
    lines.append(("from", source))
    return "".join(f"{name + ':':<15}{value}\n" for name, value in lines)
