"""The MLflow client's side of the MLflow-compatibility benchmark; runs with the MLflow
virtualenv's Python, unchanged, against either server (DearDiary's MLflow API or MLflow's
own). Each timed step also reports the client's own CPU time: what even an infinitely
fast server could not save.

Usage: python mlflow_compat_client.py URL WORKLOAD ARGS... ; prints one JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

API = "/api/2.0/mlflow"

KEYS = ("loss", "acc", "lr", "grad_norm", "val_loss")
BATCH = 1000  # MLflow's maximum metrics per log_batch request
SETUP_THREADS = 4
TOKEN = re.compile(rb'"next_page_token"\s*:\s*"([^"]*)"')
FILTER = "params.lr = '0.01' and metrics.loss < 0.5 and tags.group != 'g3'"
SERVER_PID = "COMPAT_SERVER_PID"
"""The environment variable naming the server's process (set by mlflow_compat_workloads.py):
each timed step also reports the CPU the server (and its worker processes) used for it."""


def server_cpu_s(pid: int | None = None) -> float:
    """CPU seconds a process and its children (MLflow's uvicorn workers) have used so far,
    from /proc; 0.0 when no server process is named."""
    if pid is None:
        named = os.environ.get(SERVER_PID)
        if not named:
            return 0.0
        pid = int(named)
    total = 0.0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone meanwhile
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(server_cpu_s(int(child)) for child in children.read().split())
    return total


def _experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id; concurrent processes race to create it, one wins."""
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _timed(fn: Callable[[], object], repeat: int = 3) -> dict[str, Any]:
    """Median wall and client-CPU milliseconds of `fn` over `repeat` calls, and the server's
    CPU milliseconds per call (the mean: /proc counts in 10 ms ticks)."""
    wall, cpu = [], []
    server = server_cpu_s()
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {
        "ms": statistics.median(wall),
        "client_cpu_ms": statistics.median(cpu),
        "server_cpu_ms": (server_cpu_s() - server) * 1000 / repeat,
    }


def _timed_after(write: Callable[[], object], fn: Callable[[], object]) -> dict[str, Any]:
    """`_timed`, each call after a write elsewhere (untimed; then a pause, so the call does
    not wait for it to be applied): what a server kept from the calls before is of use only
    if it knows which runs the write changed."""
    timed: list[dict[str, Any]] = []
    for _ in range(3):
        write()
        time.sleep(0.3)
        timed.append(_timed(fn, repeat=1))
    return {key: statistics.median(t[key] for t in timed) for key in timed[0]}


def ingest(url: str, points: int, name: str) -> dict[str, object]:
    """log_batch of 1,000 points at a time into one run. Says "ready" once its run exists
    and starts at "go" on stdin (sent to every process at once)."""
    client = MlflowClient(url)
    run_id = client.create_run(_experiment(client, "compat-ingest"), run_name=name).info.run_id
    now = int(time.time() * 1000)
    batches, batch = [], []
    for step in range(points // len(KEYS)):
        batch += [Metric(key, 1.0 / (step + 1), now, step) for key in KEYS]
        if len(batch) >= BATCH:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    print("ready", flush=True)
    sys.stdin.readline()
    began, cpu = time.time(), time.process_time()
    for b in batches:
        client.log_batch(run_id, metrics=b)
    return {
        "began": began,
        "done": time.time(),
        "client_cpu_s": time.process_time() - cpu,
        "points": sum(len(b) for b in batches),
    }


def history(url: str, points: int) -> dict[str, object]:
    """One run with a `points`-point metric, then get_metric_history of all of it."""
    client = MlflowClient(url)
    run_id = client.create_run(_experiment(client, "compat-history")).info.run_id
    now = int(time.time() * 1000)
    for start in range(0, points, BATCH):
        steps = range(start, min(points, start + BATCH))
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), now + s, s) for s in steps])
    got: list[object] = []

    def read() -> None:
        got[:] = client.get_metric_history(run_id, "loss")

    timed = _timed(read)
    if len(got) != points:
        raise RuntimeError(f"get_metric_history answered {len(got)} points, not {points}")
    http = requests.Session()
    query = {"run_uuid": run_id, "run_id": run_id, "metric_key": "loss"}
    answered: list[bytes] = []

    def raw() -> None:
        """The same request as the client's, its answer read but not parsed."""
        answer = http.get(f"{url}{API}/metrics/get-history", params=query, timeout=600)
        answer.raise_for_status()
        answered[:] = [answer.content]

    alone = _timed(raw)
    return {"points": points, **timed, "server": {**alone, "bytes": len(answered[0])}}


def search(url: str, runs: int) -> dict[str, object]:
    """`runs` runs with params, metrics and tags; then search_runs: all of them (pages of
    1,000, ordered by a metric), and a filtered search (params, metrics, tags)."""
    client = MlflowClient(url)
    exp_id = _experiment(client, f"compat-search-{time.time_ns()}")
    now = int(time.time() * 1000)

    def make(n: int) -> None:
        run_id = client.create_run(exp_id, run_name=f"trial-{n}").info.run_id
        client.log_batch(
            run_id,
            metrics=[
                Metric("loss", ((n * 31) % 997) / 997, now, 9),
                Metric("acc", ((n * 17) % 991) / 991, now, 9),
            ],
            params=[Param("lr", str(10 ** -(n % 5))), Param("opt", ("adam", "sgd")[n % 2])],
            tags=[RunTag("group", f"g{n % 10}")],
        )

    # the setup (not timed) from a few threads: either server takes concurrent requests
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(make, range(runs)))
    found: list[object] = []

    def everything() -> None:
        found.clear()
        token = None
        while True:
            page = client.search_runs(
                [exp_id], order_by=["metrics.loss ASC"], max_results=1000, page_token=token
            )
            found.extend(page)
            token = page.token
            if not token:
                break

    def filtered() -> None:
        client.search_runs(
            [exp_id],
            filter_string=FILTER,
            order_by=["metrics.acc DESC"],
            max_results=1000,
        )

    http = requests.Session()

    def raw(body: dict[str, Any]) -> Callable[[], None]:
        """The same requests as the client's (following page tokens), each answer read
        whole but not parsed (the page token found in its bytes)."""

        def call() -> None:
            token = None
            while True:
                answer = http.post(
                    f"{url}{API}/runs/search",
                    json={**body, **({"page_token": token} if token else {})},
                    timeout=600,
                )
                answer.raise_for_status()
                found_token = TOKEN.search(answer.content)
                token = found_token.group(1).decode() if found_token else None
                if not token:
                    break

        return call

    all_runs = _timed(everything)
    if len(found) != runs:
        raise RuntimeError(f"search_runs answered {len(found)} runs, not {runs}")
    all_body = {"experiment_ids": [exp_id], "order_by": ["metrics.loss ASC"], "max_results": 1000}
    all_runs["server"] = _timed(raw(all_body))
    filtered_runs = _timed(filtered)
    filtered_body = {**all_body, "order_by": ["metrics.acc DESC"], "filter": FILTER}
    filtered_runs["server"] = _timed(raw(filtered_body))
    # the same after a write to another experiment: a server that keeps what it rendered
    # must see that the write left these runs as they were
    other = client.create_run(_experiment(client, "compat-search-writes")).info.run_id
    writes = iter(range(1_000_000))

    def write() -> None:
        client.set_tag(other, "n", str(next(writes)))

    filtered_runs["server_after_write"] = _timed_after(write, raw(filtered_body))
    return {"runs": runs, "all": all_runs, "filtered": filtered_runs}


SMALL_CALLS = ("create_run", "log_param", "set_tag", "log_metric", "set_terminated")
"""The calls a training script makes one request at a time (`mlflow.start_run`,
`log_param`, `set_tag`, `log_metric`, `end_run`), in this order for each run."""


def small(url: str, runs: int) -> dict[str, object]:
    """`runs` runs, each made one small request at a time as a script makes it: the
    server's and the client's CPU per request over them all, and each call's mean wall
    time. A few runs first, untimed, warm both sides up."""
    client = MlflowClient(url)
    exp_id = _experiment(client, f"compat-small-{time.time_ns()}")

    def one_run(n: int, wall: dict[str, float]) -> None:
        began = time.perf_counter()
        run_id = client.create_run(exp_id, run_name=f"small-{n}").info.run_id
        calls: list[tuple[str, Callable[[], object]]] = [
            ("log_param", lambda: client.log_param(run_id, "lr", str(10 ** -(n % 5)))),
            ("set_tag", lambda: client.set_tag(run_id, "group", f"g{n % 10}")),
            ("log_metric", lambda: client.log_metric(run_id, "loss", 1.0 / (n + 1), step=0)),
            ("set_terminated", lambda: client.set_terminated(run_id)),
        ]
        wall["create_run"] += time.perf_counter() - began
        for name, call in calls:
            began = time.perf_counter()
            call()
            wall[name] += time.perf_counter() - began

    warm = dict.fromkeys(SMALL_CALLS, 0.0)
    for n in range(min(10, runs)):
        one_run(runs + n, warm)
    time.sleep(0.5)  # the warm-up's last folds are not the timed calls'
    wall = dict.fromkeys(SMALL_CALLS, 0.0)
    server, cpu, began = server_cpu_s(), time.process_time(), time.perf_counter()
    for n in range(runs):
        one_run(n, wall)
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    time.sleep(0.5)  # the last folds (DearDiary applies appended events after answering)
    requests_made = runs * len(SMALL_CALLS)
    return {
        "runs": runs,
        "requests": requests_made,
        "ms": seconds * 1000 / requests_made,
        "client_cpu_ms": cpu * 1000 / requests_made,
        "server_cpu_ms": (server_cpu_s() - server) * 1000 / requests_made,
        "calls_ms": {name: wall[name] * 1000 / runs for name in SMALL_CALLS},
    }


if __name__ == "__main__":
    url, workload, *args = sys.argv[1:]
    result: dict[str, object]
    if workload == "ingest":
        result = ingest(url, int(args[0]), args[1])
    elif workload == "small":
        result = small(url, int(args[0]))
    elif workload == "history":
        result = history(url, int(args[0]))
    else:
        result = search(url, int(args[0]))
    print(json.dumps(result))
