"""MLflow's side of the benchmark; runs with the MLflow virtualenv's Python.

Usage: python mlflow_client.py URL WORKLOAD ARGS... ; prints one JSON line."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

KEYS = ("loss", "acc", "lr", "grad_norm", "val_loss")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def call(url: str, n_sync: int, n_async: int) -> dict[str, object]:
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench-call")
    out: dict[str, object] = {}
    with mlflow.start_run():
        for mode, n, sync in (("sync", n_sync, True), ("async", n_async, False)):
            lat = []
            for i in range(n):
                t = time.perf_counter_ns()
                mlflow.log_metric("loss", 0.5, step=i, synchronous=sync)
                lat.append(time.perf_counter_ns() - t)
            lat.sort()
            out[f"{mode}_median_us"] = statistics.median(lat) / 1000
            out[f"{mode}_p99_us"] = lat[int(len(lat) * 0.99)] / 1000
        mlflow.flush_async_logging()
    return out


def _experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id; all ingest processes race to create it, one wins."""
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def ingest(url: str, points: int, name: str) -> dict[str, object]:
    """Says "ready" once its run exists, starts at "go" on stdin (sent to all at once)."""
    client = MlflowClient(url)
    exp_id = _experiment(client, "bench-ingest")
    run = client.create_run(exp_id, run_name=name)
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.time()
    batch: list[Metric] = []
    now = int(time.time() * 1000)
    for step in range(points // len(KEYS)):
        for key in KEYS:
            batch.append(Metric(key, 1.0 / (step + 1), now, step))
        if len(batch) >= 1000:  # MLflow's maximum metrics per log_batch request
            client.log_batch(run.info.run_id, metrics=batch)
            batch = []
    if batch:
        client.log_batch(run.info.run_id, metrics=batch)
    client.set_terminated(run.info.run_id)
    return {"began": began, "done": time.time(), "run_id": run.info.run_id, "rss_mb": peak_rss_mb()}


def series(url: str, run_id: str) -> dict[str, object]:
    client = MlflowClient(url)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        history = client.get_metric_history(run_id, "loss")
        times.append((time.perf_counter() - t) * 1000)
    return {"full_ms": statistics.median(times), "points": len(history)}


def sweep(url: str, runs: int) -> dict[str, object]:
    client = MlflowClient(url)
    exp_id = client.create_experiment(f"bench-sweep-{time.time_ns()}")
    for n in range(runs):
        run = client.create_run(exp_id)
        client.log_batch(
            run.info.run_id,
            params=[mlflow.entities.Param("lr", str(10 ** -(n % 5)))],
            metrics=[Metric("loss", ((n * 31 + s) % 997) / 997, 0, s) for s in range(10)],
        )
    summary, search = [], []
    for _ in range(3):
        t = time.perf_counter()
        found = client.search_runs([exp_id], order_by=["metrics.loss ASC"], max_results=runs)
        summary.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        client.search_runs(
            [exp_id],
            filter_string="params.lr = '0.01' and metrics.loss < 0.5",
            order_by=["metrics.loss ASC"],
            max_results=100,
        )
        search.append((time.perf_counter() - t) * 1000)
    return {
        "runs": len(found),
        "summary_ms": statistics.median(summary),
        "search_ms": statistics.median(search),
    }


if __name__ == "__main__":
    url, workload, *args = sys.argv[1:]
    result: dict[str, object]
    if workload == "call":
        result = call(url, int(args[0]), int(args[1]))
    elif workload == "ingest":
        result = ingest(url, int(args[0]), args[1])
    else:  # "reads": the series ingest wrote, then a sweep (one process, one import)
        result = {"series": series(url, args[0]), "sweep": sweep(url, int(args[1]))}
    print(json.dumps(result))
