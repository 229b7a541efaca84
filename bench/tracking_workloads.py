"""Benchmark rows of issue 14: what system-metrics sampling costs a training loop, and
logging a 256x256 image per step (PNG encoding, upload into the content-addressed store,
the MediaLogged event) over HTTP and into a local folder."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server
from deardiary.system_metrics import Sampler


def system_metrics_overhead(work: Path, samples: int, interval_s: float = 10.0) -> dict[str, Any]:
    """CPU time one sample costs (psutil, GPUs when present, and handing the values to
    the buffer), and what share of one core that is at `interval_s`."""
    sampler = Sampler()
    c = dd.connect(str(work / "system-metrics"), spool_dir=work / "system-metrics-spool")
    try:
        costs = []
        for _ in range(samples):
            start = time.thread_time_ns()
            values = sampler.sample()
            c.buffer.log_metrics("bench-iteration", values, None, "system")
            costs.append(time.thread_time_ns() - start)
        median_ms = statistics.median(costs) / 1e6
        return {
            "samples": samples,
            "cpu_ms_per_sample": round(median_ms, 4),
            "interval_s": interval_s,
            "percent_of_one_core": round(100 * median_ms / 1000 / interval_s, 5),
            "figures_per_sample": len(values),
        }
    finally:
        c.close()


def _log_images(c: dd.Client, steps: int) -> tuple[float, float]:
    """(seconds in the training loop's calls, seconds until all of it is durable)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)]
    with c.start_iteration(project="bench", experiment="images", capture_env=False) as it:
        it.log_image("warmup", images[0], step=0)
        c.flush()
        start = time.perf_counter()
        in_calls = 0.0
        for step in range(steps):
            call = time.perf_counter()
            it.log_image("samples", images[step % len(images)], step=step)
            in_calls += time.perf_counter() - call
    c.flush()
    return in_calls, time.perf_counter() - start


def image_logging(work: Path, steps: int) -> dict[str, Any]:
    """A 256x256 RGB image per step (random pixels: PNG barely compresses them, the worst
    case for encoding and bytes), over HTTP and into a local folder: ms per image spent
    in the training loop's call (encoding and upload run in the background; the queue
    pushes back when they fall behind), and ms per image until all are durable."""
    out: dict[str, Any] = {"steps": steps}
    with embedded_server(work / "images-http") as server:
        running = start_in_thread(server.app())
        try:
            c = dd.connect(running.url, spool_dir=work / "images-spool")
            calls, total = _log_images(c, steps)
            out["http_call_ms"] = round(1000 * calls / steps, 3)
            out["http_ms_per_image"] = round(1000 * total / steps, 3)
            c.close()
        finally:
            running.stop()
    local = dd.connect(str(work / "images-local"), spool_dir=work / "images-spool-local")
    calls, total = _log_images(local, steps)
    out["local_call_ms"] = round(1000 * calls / steps, 3)
    out["local_ms_per_image"] = round(1000 * total / steps, 3)
    local.close()
    return out
