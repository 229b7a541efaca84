"""DearDiary's side of the benchmark, one function per row of the table."""

from __future__ import annotations

import cProfile
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from procs import (
    cpu_seconds,
    deardiary_serve,
    folder_bytes,
    free_port,
    peak_rss_mb,
    rss_mb,
    running,
)
from profiles import cprofile_summary, duckdb_profile, py_spy

import deardiary as dd
from deardiary.projections.queries import metric_series
from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import (
    Event,
    ExperimentCreated,
    IterationStarted,
    MetricsLogged,
    ParamsLogged,
    ProjectCreated,
)
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.replay import replay

HERE = Path(__file__).resolve().parent


def _percentiles(samples_ns: list[int], overhead_ns: float) -> dict[str, float]:
    samples = sorted(max(0.0, s - overhead_ns) for s in samples_ns)
    return {
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def client_call(work: Path, calls: int) -> dict[str, float]:
    """Latency of one log_metric call (it only appends to the buffer)."""
    c = dd.connect(str(work / "call"), spool_dir=work / "call-spool", max_buffer_points=calls * 2)
    it = c.start_iteration(project="bench", experiment="call", capture_env=False)
    clock = time.perf_counter_ns
    empty = []
    for _ in range(20_000):
        a = clock()
        empty.append(clock() - a)
    overhead = statistics.median(empty)
    lat: list[int] = []
    log_metric = it.log_metric
    for i in range(calls):
        a = clock()
        log_metric("loss", 0.5, i)
        lat.append(clock() - a)
    it.end()
    c.close()
    return _percentiles(lat, overhead)


def _report(client: subprocess.Popen[str]) -> dict[str, Any]:
    line = client.stdout.readline() if client.stdout is not None else ""
    if not line:
        raise RuntimeError(f"client process {client.pid} failed; its error is printed above")
    report: dict[str, Any] = json.loads(line)
    return report


def run_ingest_clients(
    target: str,
    work: Path,
    total: int,
    procs: int,
    visible: Callable[[], int],
    expect: int | None = None,
    tag: str = "r0",
) -> dict[str, Any]:
    """Time from the first logging call to the moment a query sees the last point.

    Each client reports as soon as its last point is acknowledged; then `visible()` runs
    one query and returns how many points it saw (`expect`, by default `total`) -- the
    server's reads catch up with the log first, so it answers at the moment everything
    acknowledged is queryable. `tag` names this round's iterations and spools."""
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "dd_client.py"),
                target,
                str(work / f"spool-{tag}-{n}"),
                str(total // procs),
                f"{tag}-proc-{n}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(procs)
    ]
    for p in clients:  # each has connected and started its iteration
        if p.stdout is None or p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"client process {p.pid} failed; its error is printed above")
    for p in clients:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = [_report(p) for p in clients]
    seen = visible()
    visible_at = time.time()
    for p in clients:
        p.communicate(timeout=600)  # closes its stdin: the client exits
    assert seen == (expect or total), (seen, expect or total)
    first = min(r["began"] for r in reports)
    return {
        "points": total,
        "seconds": visible_at - first,
        "points_per_s": total / (visible_at - first),
        "calls_done_s": max(r["logged"] for r in reports) - first,
        "acked_s": max(r["flushed"] for r in reports) - first,
        "client_peak_rss_mb": max(r["rss_mb"] for r in reports),
        "client_cpu_s": sum(r["cpu_s"] for r in reports),
    }


def ingest_http(work: Path, total: int, procs: int, sustained_rounds: int) -> dict[str, Any]:
    """The measured round, then `sustained_rounds` more into the same server (its RSS after
    each: memory must stay flat); the last of them runs under py-spy for the profile."""
    data = work / "ingest-http"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        deardiary_serve(data, port, work / "serve.log"), f"{url}/healthz", work / "serve.log"
    ) as server:
        http = httpx.Client(timeout=120)

        def count() -> int:
            r = http.get(f"{url}/api/v1/sql", params={"q": "SELECT count(*) AS n FROM metrics"})
            r.raise_for_status()
            return int(r.json()["items"][0]["n"])

        cpu_before = cpu_seconds(server.pid)
        result = run_ingest_clients(url, work, total, procs, count)
        result["server_cpu_s"] = cpu_seconds(server.pid) - cpu_before
        result["server_peak_rss_mb"] = peak_rss_mb(server.pid)
        rss, rates = [rss_mb(server.pid)], [result["points_per_s"]]
        spy = work / "ingest-profile.txt"
        for r in range(1, sustained_rounds + 1):
            with py_spy(server.pid, spy) if r == sustained_rounds else nullcontext() as profile:
                again = run_ingest_clients(url, work, total, procs, count, total * (r + 1), f"r{r}")
            rss.append(rss_mb(server.pid))
            rates.append(again["points_per_s"])
        rounds = len(rss)
        result["sustained"] = {
            "points": total * rounds,
            "server_peak_rss_mb": peak_rss_mb(server.pid),
            "server_rss_mb_after_each_round": rss,
            "points_per_s_each_round": rates,
        }
        assert profile is not None
        result["server_profile"] = profile.summary()
        http.close()
    result["bytes_per_point"] = folder_bytes(data) / (total * rounds)
    result["log_points"] = total * rounds
    result["data"] = str(data)
    return result


def ingest_local(work: Path, total: int, procs: int) -> dict[str, Any]:
    """The same sweep written straight into a data folder (no server), then queried."""
    data = work / "ingest-local"

    def count() -> int:
        with EmbeddedStore(data) as store:
            return int(store.sql("SELECT count(*) AS n FROM metrics").to_pylist()[0]["n"])

    result = run_ingest_clients(str(data), work, total, procs, count)
    result["bytes_per_point"] = folder_bytes(data) / total
    return result


def _append(log: SqliteEventLog, events: list[Event]) -> None:
    envs = [wrap(e) for e in events]
    log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])


def _one_iteration_log(data: Path, experiment: str, iteration: str) -> SqliteEventLog:
    """A new log of project "bench" holding `experiment` with `iteration` started in it."""
    log = SqliteEventLog(str(data / "log.db"))
    pid = ids.project_id("bench")
    eid = ids.experiment_id(pid, experiment)
    _append(
        log,
        [
            ProjectCreated(project_id=pid, name="bench"),
            ExperimentCreated(experiment_id=eid, project_id=pid, name=experiment),
            IterationStarted(iteration_id=iteration, experiment_id=eid, project_id=pid),
        ],
    )
    return log


def build_series(data: Path, points: int) -> str:
    it = "series-1"
    log = _one_iteration_log(data, "series", it)
    chunk = 50_000
    for start in range(0, points, chunk):
        n = min(chunk, points - start)
        _append(
            log,
            [
                MetricsLogged.from_points(
                    it,
                    ["loss"] * n,
                    [((i * 7919) % 1000) / 1000.0 for i in range(start, start + n)],
                    list(range(start, start + n)),
                    [0] * n,
                )
            ],
        )
    log.close()
    with EmbeddedStore(data) as store:
        store.catch_up()
        store.store.compact()
    return it


def disk_noisy(work: Path, points: int) -> dict[str, Any]:
    """Bytes a point on disk for curves like real training: five keys, each a random walk
    with noise in every mantissa bit, client times a few ms apart with jitter, logged in
    batches of 10,000 points and folded as a live server does (compacting whenever the
    hot table reaches its limit). The ingest rows log one smooth value for all five keys,
    which compresses far better than real curves do."""
    import numpy as np

    data = work / "disk-noisy"
    it = "disk-1"
    log = _one_iteration_log(data, "disk", it)
    rng = np.random.default_rng(20261126)
    keys = ["loss", "acc", "lr", "grad_norm", "val_loss"]
    steps = points // len(keys)
    walks = np.cumsum(rng.normal(0, 0.01, (steps, len(keys))), axis=0) + 1.0
    clock = 1_764_000_000_000_000 + np.cumsum(rng.integers(2_000, 4_000, steps))
    batch, fold_every = 10_000 // len(keys), 1_000_000 // len(keys)
    with EmbeddedStore(data) as store:
        for first in range(0, steps, batch):
            rows = range(first, min(first + batch, steps))
            _append(
                log,
                [
                    MetricsLogged(
                        iteration_id=it,
                        keys=keys,
                        key_index=np.tile(np.arange(5, dtype="<u2"), len(rows)).tobytes(),
                        steps=np.repeat(np.arange(rows.start, rows.stop, dtype="<i8"), 5).tobytes(),
                        values=walks[rows.start : rows.stop].astype("<f8").tobytes(),
                        times=np.repeat(clock[rows.start : rows.stop], 5).astype("<i8").tobytes(),
                    )
                ],
            )
            if rows.stop % fold_every == 0 or rows.stop == steps:
                store.catch_up()
                store.store.maybe_compact()
        store.store.compact()  # what a server does when it next idles
    log.close()
    total = steps * len(keys)
    duckdb_file = sum(f.stat().st_size for f in (data / "projections").glob("state.duckdb*"))
    return {
        "points": total,
        "bytes_per_point": folder_bytes(data) / total,
        "log_bytes_per_point": sum(f.stat().st_size for f in data.glob("log.db*")) / total,
        "segments_bytes_per_point": (folder_bytes(data / "projections") - duckdb_file) / total,
        "duckdb_file_mb": duckdb_file / 1e6,
    }


def _median_ms(fn: Any, runs: int = 7) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def series_read(work: Path, points: int) -> dict[str, Any]:
    data = work / "series"
    it = build_series(data, points)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"points": points}
    with running(
        deardiary_serve(data, port, work / "series.log"), f"{url}/healthz", work / "series.log"
    ):
        http = httpx.Client(timeout=60)

        def get(max_points: int | None, accept: str = "*/*") -> pa.Table:
            params: dict[str, Any] = {"key": "loss", "format": "arrow"}
            if max_points:
                params["max_points"] = max_points
            r = http.get(
                f"{url}/api/v1/iterations/{it}/metric-history",
                params=params,
                headers={"Accept": accept},
            )
            return pa.ipc.open_stream(r.content).read_all()

        assert get(None).num_rows == points
        out["full_ms"] = _median_ms(lambda: get(None))
        out["downsampled_ms"] = _median_ms(lambda: get(1000))
        # the same read with lz4-compressed buffers, as the SDK asks for them (beside the
        # plain read above, which is what a client asking nothing gets)
        lz4 = 'application/vnd.apache.arrow.stream; codecs="lz4"'
        assert get(None, lz4).num_rows == points
        out["full_lz4_ms"] = _median_ms(lambda: get(None, lz4))
        http.close()
    with EmbeddedStore(data) as store:  # the same queries in-process, under DuckDB's profiler
        conn = store.store.reader()
        metric_series.history(conn, it, "loss")  # warm, as the timed reads were (footers)
        metric_series.downsampled(conn, it, "loss", 1000)
        out["full_profile"] = duckdb_profile(
            conn, lambda c: metric_series.history(c, it, "loss"), work / "full-profile"
        )
        out["downsampled_profile"] = duckdb_profile(
            conn,
            lambda c: metric_series.downsampled(c, it, "loss", 1000),
            work / "downsampled-profile",
        )
    return out


def build_sweep(data: Path, iterations: int) -> str:
    log = SqliteEventLog(str(data / "log.db"))
    pid = ids.project_id("bench")
    eid = ids.experiment_id(pid, "sweep")
    events: list[Event] = [
        ProjectCreated(project_id=pid, name="bench"),
        ExperimentCreated(experiment_id=eid, project_id=pid, name="sweep"),
    ]
    for n in range(iterations):
        it = f"trial-{n:05d}"
        events += [
            IterationStarted(iteration_id=it, experiment_id=eid, project_id=pid, name=it),
            ParamsLogged(iteration_id=it, params={"lr": str(10 ** -(n % 5)), "bs": str(n % 7)}),
            MetricsLogged.from_points(
                it,
                ["loss"] * 10,
                [((n * 31 + s) % 997) / 997 for s in range(10)],
                list(range(10)),
                [0] * 10,
            ),
        ]
        if len(events) > 3000:
            _append(log, events)
            events = []
    _append(log, events)
    log.close()
    with EmbeddedStore(data) as store:
        store.catch_up()
        store.store.compact()
    return eid


def sweep_queries(work: Path, iterations: int) -> dict[str, Any]:
    data = work / "sweep"
    eid = build_sweep(data, iterations)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        deardiary_serve(data, port, work / "sweep.log"), f"{url}/healthz", work / "sweep.log"
    ):
        http = httpx.Client(timeout=60)

        def summary() -> None:
            r = http.get(
                f"{url}/api/v1/experiments/{eid}/leaderboard",
                params={"key": "loss", "goal": "min", "format": "arrow"},
            )
            assert pa.ipc.open_stream(r.content).read_all().num_rows == iterations

        def search() -> None:
            r = http.get(
                f"{url}/api/v1/iterations",
                params={
                    "experiment_id": eid,
                    "filter": "params.lr = '0.01' and metrics.loss.min < 0.5",
                    "order_by": "metrics.loss.min ASC",
                    "limit": 100,
                },
            )
            assert r.status_code == 200 and r.json()["total"] > 0

        out = {
            "iterations": iterations,
            "summary_ms": _median_ms(summary),
            "search_ms": _median_ms(search),
        }
        http.close()
    return out


def replay_rate(source: Path, work: Path, points: int) -> dict[str, Any]:
    """Rebuild every projection from the log; timed once, then once more under cProfile."""
    log = SqliteEventLog(str(source / "log.db"))
    t = time.perf_counter()
    replay(log, work / "replayed")
    seconds = time.perf_counter() - t
    profile = cProfile.Profile()
    profile.runcall(replay, log, work / "replayed-profiled")
    log.close()
    return {
        "points": points,
        "seconds": seconds,
        "points_per_s": points / seconds,
        "profile": cprofile_summary(profile),
    }
