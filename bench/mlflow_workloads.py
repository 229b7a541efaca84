"""MLflow's tracking server (SQLite backend) on the same workloads, side by side.

MLflow is installed by the benchmark into its own virtualenv (bench/.mlflow-venv), never
into DearDiary's; its server is started on loopback and stopped by PID."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from procs import folder_bytes, free_port, peak_rss_mb, running

HERE = Path(__file__).resolve().parent
VENV = HERE / ".mlflow-venv"
VERSION = "3.17.2"
PYTHON = VENV / "bin" / "python"


def ensure_installed() -> str:
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run(
        [str(PYTHON), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != VERSION:
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "-q", f"mlflow=={VERSION}"], check=True
        )
    return VERSION


def _client(url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(PYTHON), str(HERE / "mlflow_client.py"), url, *args],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def server_cmd(data: Path, port: int) -> list[str]:
    """MLflow's tracking server over a SQLite store and artifact folder in `data`, on a
    loopback port."""
    return [
        str(VENV / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{data / 'mlflow.db'}",
        "--default-artifact-root",
        str(data / "art"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def run_all(
    work: Path, ingest_points: int, procs: int, sweep_runs: int, calls: tuple[int, int]
) -> dict[str, Any]:
    """Every MLflow row; `calls` is how many synchronous and asynchronous log_metric calls
    are timed."""
    data = work / "mlflow"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = server_cmd(data, port)
    results: dict[str, Any] = {}
    with running(cmd, f"{url}/health", work / "mlflow.log") as server:
        results["call"] = _client(url, "call", str(calls[0]), str(calls[1]))
        clients = [
            subprocess.Popen(
                [
                    str(PYTHON),
                    str(HERE / "mlflow_client.py"),
                    url,
                    "ingest",
                    str(ingest_points // procs),
                    f"proc-{n}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(procs)
        ]
        for c in clients:  # each has created its run
            while c.stdout is not None and c.stdout.readline().strip() != "ready":
                if c.poll() is not None:
                    raise RuntimeError(f"MLflow client {c.pid} failed; its error is above")
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        reports = [json.loads(c.communicate(timeout=3600)[0].splitlines()[-1]) for c in clients]
        seconds = max(r["done"] for r in reports) - min(r["began"] for r in reports)
        results["ingest"] = {
            "points": ingest_points,
            "seconds": seconds,
            "points_per_s": ingest_points / seconds,
            "client_peak_rss_mb": max(r["rss_mb"] for r in reports),
        }
        results.update(_client(url, "reads", reports[0]["run_id"], str(sweep_runs)))
        results["server_peak_rss_mb"] = _tree_peak_rss(server.pid)
    results["bytes_per_point"] = folder_bytes(data) / ingest_points
    return results


def _tree_peak_rss(pid: int) -> float:
    """The server and its workers (MLflow serves through uvicorn worker processes)."""
    total = peak_rss_mb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += peak_rss_mb(int(child))
    return total
