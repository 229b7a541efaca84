"""The same MLflow client against DearDiary's MLflow API and against MLflow's own server
(SQLite backend), in the same run: log_batch ingest from several processes,
get_metric_history of a 100,000-point metric, search_runs over 2,000 runs.

The client is MLflow's, from the benchmark's MLflow virtualenv (bench/.mlflow-venv),
unchanged: it only gets another MLFLOW_TRACKING_URI. Beside each time the client's own
CPU time is reported -- the ceiling of any server's advantage -- and each server's CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import mlflow_workloads as mlw
from procs import cpu_seconds, deardiary_serve, free_port, running

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "mlflow_compat_client.py"


def _env(server_pid: int) -> dict[str, str]:
    """The client's environment: it measures the server's CPU around each timed step."""
    return {**os.environ, "COMPAT_SERVER_PID": str(server_pid)}


def _client(url: str, server_pid: int, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(mlw.PYTHON), str(CLIENT), url, *args],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
        env=_env(server_pid),
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _ingest(url: str, points: int, procs: int) -> dict[str, Any]:
    clients = [
        subprocess.Popen(
            [str(mlw.PYTHON), str(CLIENT), url, "ingest", str(points // procs), f"proc-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(procs)
    ]
    for c in clients:  # each has created its run and built its batches
        while c.stdout is not None and c.stdout.readline().strip() != "ready":
            if c.poll() is not None:
                raise RuntimeError(f"MLflow client {c.pid} failed; its error is above")
    for c in clients:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    reports = [json.loads(c.communicate(timeout=3600)[0].splitlines()[-1]) for c in clients]
    # until a read sees every point: DearDiary folds appended points into its tables after
    # answering (a read waits for that), MLflow before; the fold's CPU counts as ingest's
    seen = httpx.get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "compat-ingest"},
        timeout=600,
    )
    seen.raise_for_status()
    seconds = time.time() - min(r["began"] for r in reports)
    logged = sum(r["points"] for r in reports)
    client_cpu = sum(r["client_cpu_s"] for r in reports)
    return {
        "points": logged,
        "procs": procs,
        "seconds": seconds,
        "points_per_s": logged / seconds,
        "client_cpu_s": client_cpu,
        # with the clients alone on every core, they could not log faster than this
        "client_ceiling_points_per_s": logged / (client_cpu / min(procs, _cores())),
    }


def _cores() -> int:
    return os.cpu_count() or 1


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a server and its worker processes (MLflow serves from uvicorn
    workers, children of the process started)."""
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone meanwhile
                total += _tree_cpu(int(child))
    return total


def _small_runs(scale: dict[str, int]) -> int:
    """Runs made one small request at a time (five requests each)."""
    return scale.get("compat_small", max(10, scale["compat_runs"] // 10))


def _side(url: str, pid: int, scale: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("ingest", lambda: _ingest(url, scale["compat_ingest"], scale["compat_procs"])),
        ("history", lambda: _client(url, pid, "history", str(scale["compat_history"]))),
        ("search", lambda: _client(url, pid, "search", str(scale["compat_runs"]))),
        ("small", lambda: _client(url, pid, "small", str(_small_runs(scale)))),
    ]
    for name, run in steps:
        before = _tree_cpu(pid)
        out[name] = run()
        out[name]["server_cpu_s"] = _tree_cpu(pid) - before
    return out


def run_all(work: Path, scale: dict[str, int]) -> dict[str, Any]:
    """Both servers, one after the other, each on a fresh data folder."""
    results: dict[str, Any] = {"mlflow_version": mlw.ensure_installed(), "cores": _cores()}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = work / "compat-deardiary"
    results["load"] = {"deardiary": os.getloadavg()[0]}
    with running(
        deardiary_serve(data, port, work / "dd.log"), f"{url}/healthz", work / "dd.log"
    ) as p:
        results["deardiary"] = _side(url, p.pid, scale)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = work / "compat-mlflow"
    store.mkdir(parents=True, exist_ok=True)
    cmd = mlw.server_cmd(store, port)
    results["load"]["mlflow"] = os.getloadavg()[0]
    # MLflow's server starts 4 workers, each importing mlflow: minutes on a loaded machine
    with running(cmd, f"{url}/health", work / "mlflow-compat.log", start_timeout=600) as p:
        results["mlflow"] = _side(url, p.pid, scale)
    return results


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}x" if a and b else "—"


def _n(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


Row = tuple[str, float | None, float | None, str, str, str, str]


def _servers_cpu(d: float | None, m: float | None) -> str:
    """The servers' CPU milliseconds per call, DearDiary / MLflow, and the ratio."""
    if d is None or m is None:
        return ""
    return f"{_n(d)} / {_n(m)} ms ({_ratio(m, d)})"


def _read_rows(name: str, d: dict[str, Any], m: dict[str, Any]) -> list[Row]:
    """A read through the MLflow client, then the same request(s) answered alone."""
    own = d["client_cpu_ms"]
    rows: list[Row] = [
        (
            f"{name}, through the client (ms)",
            d["ms"],
            m["ms"],
            _ratio(m["ms"], d["ms"]),
            f"{_n(own)} ms",
            _ratio(m["ms"], own),
            _servers_cpu(d.get("server_cpu_ms"), m.get("server_cpu_ms")),
        )
    ]
    if "server" in d and "server" in m:
        rows.append(
            (
                f"{name}, the servers' answer alone (ms)",
                d["server"]["ms"],
                m["server"]["ms"],
                _ratio(m["server"]["ms"], d["server"]["ms"]),
                "",
                "",
                _servers_cpu(d["server"].get("server_cpu_ms"), m["server"].get("server_cpu_ms")),
            )
        )
    if "server_after_write" in d and "server_after_write" in m:
        dw, mw = d["server_after_write"], m["server_after_write"]
        rows.append(
            (
                f"{name}, the servers' answer alone after a write elsewhere (ms)",
                dw["ms"],
                mw["ms"],
                _ratio(mw["ms"], dw["ms"]),
                "",
                "",
                _servers_cpu(dw.get("server_cpu_ms"), mw.get("server_cpu_ms")),
            )
        )
    return rows


SMALL_NAME = "one small request (create_run, log_param, set_tag, log_metric, set_terminated)"


def _small_rows(d: dict[str, Any] | None, m: dict[str, Any] | None) -> list[Row]:
    """The small requests a script makes one at a time, per request (mean of the mix)."""
    if not d or not m:
        return []
    return [
        (
            f"{SMALL_NAME}, through the client (ms)",
            d["ms"],
            m["ms"],
            _ratio(m["ms"], d["ms"]),
            f"{_n(d['client_cpu_ms'])} ms",
            _ratio(m["ms"], d["client_cpu_ms"]),
            _servers_cpu(d["server_cpu_ms"], m["server_cpu_ms"]),
        ),
        (
            "one small request, the server's CPU (ms)",
            d["server_cpu_ms"],
            m["server_cpu_ms"],
            _ratio(m["server_cpu_ms"], d["server_cpu_ms"]),
            "",
            "",
            "",
        ),
    ]


def _setup_note(d: dict[str, Any], m: dict[str, Any]) -> str:
    """The search rows' set-up (a create_run and a log_batch per run, from a few threads):
    the servers' CPU per run made."""
    runs = d["search"].get("runs")
    if not runs or "server_cpu_s" not in d["search"] or "server_cpu_s" not in m["search"]:
        return ""
    per_run = (d["search"]["server_cpu_s"] * 1000 / runs, m["search"]["server_cpu_s"] * 1000 / runs)
    return (
        f" The search set-up and searches, per run made (create_run and a log_batch):"
        f" DearDiary {per_run[0]:.1f} ms, MLflow {per_run[1]:.1f} ms of server CPU."
    )


def _small_note(d: dict[str, Any] | None, m: dict[str, Any] | None) -> list[str]:
    """Each small call's wall time on both servers, and what a request costs each."""
    if not d or not m:
        return []
    calls = ", ".join(
        f"{name} {_n(d['calls_ms'][name])} / {_n(m['calls_ms'][name])} ms"
        for name in d["calls_ms"]
        if name in m["calls_ms"]
    )
    return [
        "",
        f"Small requests: {d['runs']:,} runs, each made as a script makes it -- create_run,"
        " log_param, set_tag, log_metric, set_terminated, one request at a time. Per request"
        f" (mean of the mix) the server's CPU is DearDiary {d['server_cpu_ms']:.1f} ms,"
        f" MLflow {m['server_cpu_ms']:.1f} ms (with its uvicorn workers; "
        f"{_ratio(m['server_cpu_ms'], d['server_cpu_ms'])}), the client's own CPU"
        f" {d['client_cpu_ms']:.1f} ms. DearDiary's includes folding the request's events into"
        " its tables after answering (MLflow writes its rows before answering). Each call's"
        f" wall time, DearDiary / MLflow: {calls}.",
    ]


def report_section(r: dict[str, Any]) -> list[str]:
    """The docs/benchmarks.md section (empty when the workload was not run)."""
    c = r.get("mlflow_compat")
    if not c:
        return []
    if "error" in c:
        return ["## The MLflow client against both servers", "", f"Not run: {c['error']}", ""]
    d, m = c["deardiary"], c["mlflow"]
    di, mi = d["ingest"], m["ingest"]
    batches = di["points"] / 1000
    per_request = (
        di["server_cpu_s"] * 1000 / batches,
        mi["server_cpu_s"] * 1000 / (mi["points"] / 1000),
    )
    rows: list[Row] = [
        (
            f"log_batch ingest, {di['procs']} processes (points/s)",
            di["points_per_s"],
            mi["points_per_s"],
            _ratio(di["points_per_s"], mi["points_per_s"]),
            f"{_n(di['client_ceiling_points_per_s'])} points/s",
            _ratio(di["client_ceiling_points_per_s"], mi["points_per_s"]),
            _servers_cpu(*per_request),
        ),
        (
            "log_batch, the server's CPU per 1,000-point request (ms)",
            *per_request,
            _ratio(mi["server_cpu_s"] / mi["points"], di["server_cpu_s"] / di["points"]),
            f"{_n(di['client_cpu_s'] * 1000 / batches)} ms",
            "",
            "",
        ),
        *_read_rows(
            f"get_metric_history, {d['history']['points']:,} points", d["history"], m["history"]
        ),
        *_read_rows(
            f"search_runs, all {d['search']['runs']:,} runs by a metric",
            d["search"]["all"],
            m["search"]["all"],
        ),
        *_read_rows(
            "search_runs, filtered on params, metrics and tags",
            d["search"]["filtered"],
            m["search"]["filtered"],
        ),
        *_small_rows(d.get("small"), m.get("small")),
    ]
    bound = [  # rows where even a server costing nothing could not show 10x through the client
        f"{name} (MLflow {_n(mlflow_ms)} ms, the client's own CPU {_n(own)} ms: at most"
        f" {mlflow_ms / own:.1f}x)"
        for name, own, mlflow_ms in (
            ("get_metric_history", d["history"]["client_cpu_ms"], m["history"]["ms"]),
            ("search_runs of all", d["search"]["all"]["client_cpu_ms"], m["search"]["all"]["ms"]),
            (
                "the filtered search_runs",
                d["search"]["filtered"]["client_cpu_ms"],
                m["search"]["filtered"]["ms"],
            ),
        )
        if own and mlflow_ms < 10 * own
    ]
    if di["client_ceiling_points_per_s"] < 10 * mi["points_per_s"]:
        bound.insert(
            0,
            f"log_batch ingest (MLflow {_n(mi['points_per_s'])} points/s; the clients alone,"
            f" their CPU over every core, {_n(di['client_ceiling_points_per_s'])}: at most"
            f" {di['client_ceiling_points_per_s'] / mi['points_per_s']:.1f}x)",
        )
    shared = ""
    cores = c.get("cores") or r.get("machine", {}).get("cpus")
    if cores:  # the clients and the server share the cores: the least wall time is their CPU
        least = [
            (side["ingest"]["client_cpu_s"] + side["ingest"]["server_cpu_s"]) / cores
            for side in (d, m)
        ]
        shared = (
            f"Ingest on these {cores} cores, which the clients and the server share, cannot take"
            " less wall time than the clients' and the server's CPU spread over every core:"
            f" DearDiary {least[0]:.1f} s (the clients alone"
            f" {d['ingest']['client_cpu_s'] / cores:.1f} s), MLflow {least[1]:.1f} s for the"
            f" same points -- at most {least[1] / least[0]:.1f}x on this machine."
        )
    load = c.get("load", {})
    lines = [
        "## The MLflow client against both servers",
        "",
        f"`mlflow` {c['mlflow_version']} (`bench/mlflow_compat_client.py`, unchanged but for"
        " its tracking URI) against DearDiary's MLflow-compatible API and against MLflow's own"
        " server (SQLite backend, its default 4 uvicorn workers), in the same run, each on a"
        " fresh data folder. Goal: ≥ 10x MLflow on each row, or the client's own cost. The"
        " client's own time is its CPU time in that call (median of 3): no server can make the"
        " call faster, so MLflow's time over it is the most any server could show through this"
        " client (last column). The servers' answer alone is the same request (same query or"
        " JSON body, same pages) sent with plain `requests` and its answer read whole but not"
        " parsed: what each server costs, without the client's protobuf decoding. Ingest's"
        " ceiling: the clients' CPU spread over every core, as if the server cost nothing."
        " The last column is each server's own CPU per call (per request for ingest, its"
        " fold included; with MLflow's uvicorn workers), read from /proc around the timed"
        " calls: the client's own CPU beside both servers' says where a call's time goes.",
        "",
        "| measure | DearDiary | MLflow | DearDiary advantage | the client's own CPU"
        " | most possible through the client | the servers' CPU per call (DearDiary / MLflow) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {a} | {_n(b)} | {_n(cc)} | {dd} | {e} | {f} | {g} |" for a, b, cc, dd, e, f, g in rows
    ]
    if bound:
        lines += [
            "",
            "The MLflow client is the ceiling: 10x MLflow through it is out of reach for any"
            " server on " + "; ".join(bound) + ". The servers' answers alone are the rows"
            " to compare the servers by.",
        ]
    if shared:
        lines += ["", shared]
    lines += _small_note(d.get("small"), m.get("small"))
    lines += [
        "",
        "Server CPU seconds per workload, setup included (ingest / history / search),"
        " DearDiary:"
        f" {' / '.join(_n(d[k]['server_cpu_s']) for k in ('ingest', 'history', 'search'))};"
        f" MLflow (with its uvicorn workers):"
        f" {' / '.join(_n(m[k]['server_cpu_s']) for k in ('ingest', 'history', 'search'))}."
        + _setup_note(d, m)
        + (
            f" Load average (1 min) when each side began: DearDiary {load['deardiary']:.1f},"
            f" MLflow {load['mlflow']:.1f}."
            if {"deardiary", "mlflow"} <= load.keys()
            else ""
        ),
        "",
    ]
    return lines
