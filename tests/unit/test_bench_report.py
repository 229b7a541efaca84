"""docs/benchmarks.md is rendered from a results JSON: the committed ones render whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from report import render  # noqa: E402


def test_the_newest_full_run_renders_without_template_leftovers() -> None:
    newest = sorted((ROOT / "bench" / "results").glob("*-full.json"))[-1]
    page = render(json.loads(newest.read_text()))
    leftovers = page.replace("{id}", "")  # the page's request timeline names route templates
    assert "{" not in leftovers and "}" not in leftovers
    assert "| a. `log_metric` call, median (µs) |" in page and "## Profiles" in page


def test_the_mlflow_client_section_renders_each_row_and_its_ceiling() -> None:
    from mlflow_compat_workloads import report_section

    def read(ms: float, own: float, alone: float) -> dict[str, object]:
        server = {"ms": alone, "client_cpu_ms": 1.0, "server_cpu_ms": alone / 2}
        return {"ms": ms, "client_cpu_ms": own, "server_cpu_ms": ms / 4, "server": server}

    def side(points_per_s: float, cpu: float, ms: float) -> dict[str, object]:
        return {
            "ingest": {
                "points": 200_000,
                "procs": 4,
                "points_per_s": points_per_s,
                "client_cpu_s": 8.0,
                "client_ceiling_points_per_s": 50_000.0,
                "server_cpu_s": cpu,
            },
            "history": {"points": 100_000, **read(ms, 3000.0, ms / 10), "server_cpu_s": cpu},
            "search": {
                "runs": 2000,
                "all": read(ms / 10, 600.0, ms / 100),
                "filtered": read(ms / 100, 70.0, ms / 1000),
                "server_cpu_s": cpu,
            },
        }

    results: dict[str, Any] = {
        "mlflow_version": "3.17.2",
        "deardiary": side(20_000.0, 4.0, 4000.0),
        "mlflow": side(2_000.0, 40.0, 20_000.0),
        "load": {"deardiary": 1.0, "mlflow": 1.5},
        "cores": 2,
    }
    for name, ms in (("deardiary", 30.0), ("mlflow", 240.0)):
        after = {"ms": ms, "client_cpu_ms": 1.0, "server_cpu_ms": ms - 5}
        results[name]["search"]["filtered"]["server_after_write"] = after
    page = "\n".join(report_section({"mlflow_compat": results}))
    assert "{" not in page and "}" not in page
    assert (
        "| search_runs, filtered on params, metrics and tags, the servers' answer alone after a"
        " write elsewhere (ms) | 30.0 | 240 | 8.0x |  |  | 25.0 / 235 ms (9.4x) |" in page
    )
    assert "| log_batch ingest, 4 processes (points/s) | 20,000 | 2,000 | 10.0x |" in page
    assert (
        "| log_batch, the server's CPU per 1,000-point request (ms) | 20.0 | 200 | 10.0x |" in page
    )
    assert (
        "| get_metric_history, 100,000 points, through the client (ms) | 4,000 | 20,000 | 5.0x"
        in page
    )
    assert "| get_metric_history, 100,000 points, the servers' answer alone (ms) | 400" in page
    assert "3,000 ms | 6.7x |" in page  # MLflow's time over the client's own
    # each server's own CPU per call beside the client's, through the client and alone
    assert "3,000 ms | 6.7x | 1,000 / 5,000 ms (5.0x) |" in page
    assert (
        "the servers' answer alone (ms) | 400 | 2,000 | 5.0x |  |  | 200 / 1,000 ms (5.0x) |"
        in page
    )
    assert "| 20,000 | 2,000 | 10.0x | 50,000 points/s | 25.0x | 20.0 / 200 ms (10.0x) |" in page
    assert "MLflow 1.5." in page
    assert "out of reach for any server on get_metric_history (MLflow 20,000 ms" in page
    assert "DearDiary 6.0 s (the clients alone 4.0 s), MLflow 24.0 s" in page  # 2 cores
    failed = report_section({"mlflow_compat": {"error": "RuntimeError: no MLflow"}})
    assert "Not run: RuntimeError: no MLflow" in failed
    assert report_section({}) == []


def test_the_mlflow_client_section_gives_small_requests_per_request() -> None:
    from mlflow_compat_workloads import report_section

    def read(ms: float) -> dict[str, object]:
        return {"ms": ms, "client_cpu_ms": 1.0, "server_cpu_ms": ms / 2}

    def side(small_cpu: float | None) -> dict[str, object]:
        out: dict[str, object] = {
            "ingest": {
                "points": 2000,
                "procs": 2,
                "points_per_s": 1000.0,
                "client_cpu_s": 1.0,
                "client_ceiling_points_per_s": 50_000.0,
                "server_cpu_s": 1.0,
            },
            "history": {"points": 100, **read(10.0), "server_cpu_s": 1.0},
            "search": {"runs": 200, "all": read(5.0), "filtered": read(2.0), "server_cpu_s": 2.0},
        }
        if small_cpu is not None:
            calls = {"create_run": 4.0, "log_param": 3.0}
            out["small"] = {
                "runs": 20,
                "requests": 100,
                "ms": small_cpu * 2,
                "client_cpu_ms": 1.5,
                "server_cpu_ms": small_cpu,
                "calls_ms": calls,
            }
        return out

    results = {"mlflow_version": "3.17.2", "deardiary": side(4.0), "mlflow": side(12.0)}
    page = "\n".join(report_section({"mlflow_compat": results}))
    assert "{" not in page and "}" not in page
    assert "log_metric, set_terminated), through the client (ms) | 8.0 | 24.0 | 3.0x |" in page
    assert "| 1.5 ms | 16.0x | 4.0 / 12.0 ms (3.0x) |" in page
    assert "| one small request, the server's CPU (ms) | 4.0 | 12.0 | 3.0x |" in page
    assert "the server's CPU is DearDiary 4.0 ms, MLflow 12.0 ms" in page
    assert "create_run 4.0 / 4.0 ms, log_param 3.0 / 3.0 ms" in page
    assert "per run made (create_run and a log_batch): DearDiary 10.0 ms, MLflow 10.0 ms" in page
    # results of a run before the small requests were measured still render
    older = {"mlflow_version": "3.17.2", "deardiary": side(None), "mlflow": side(None)}
    assert "one small request" not in "\n".join(report_section({"mlflow_compat": older}))
