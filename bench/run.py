"""DearDiary vs MLflow, side by side: `make bench` (or `make bench ARGS=--quick`).

Writes bench/results/<date>.json and renders docs/benchmarks.md from it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.kafka_broker

import dd_workloads as ddw
from report import render

HERE = Path(__file__).resolve().parent
SCALES = {
    "full": {
        "calls": 200_000,
        "ingest": 1_000_000,
        "procs": 8,
        "series": 1_000_000,
        "sweep": 10_000,
        "ml_ingest": 40_000,
        "ml_sweep": 500,
        "ml_procs": 8,
        "ml_sync_calls": 300,
        "ml_async_calls": 5000,
        "sustained_rounds": 4,
        "web_table_runs": 10_000,
        "web_chart_steps": 1_000_000,
        "trial_sweep": 64,
        "trial_parallel": 4,
        "trial_steps": 2_000,
        "trial_keys": 10,
        "ml_trial_sweep": 16,
        "image_steps": 1000,
        "compat_ingest": 200_000,
        "compat_procs": 4,
        "compat_history": 100_000,
        "compat_runs": 2_000,
    },
    "quick": {
        "calls": 50_000,
        "ingest": 200_000,
        "procs": 8,
        "series": 200_000,
        "sweep": 2_000,
        "ml_ingest": 8_000,
        "ml_sweep": 30,
        "ml_procs": 2,
        "ml_sync_calls": 20,
        "ml_async_calls": 300,
        "sustained_rounds": 2,
        "web_table_runs": 2_000,
        "web_chart_steps": 100_000,
        "trial_sweep": 16,
        "trial_parallel": 4,
        "trial_steps": 2_000,
        "trial_keys": 10,
        "ml_trial_sweep": 4,
        "image_steps": 100,
        "compat_ingest": 20_000,
        "compat_procs": 2,
        "compat_history": 10_000,
        "compat_runs": 200,
    },
}


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    import duckdb
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "platform": platform.platform(),
    }


_STARTED = time.monotonic()
# CPU seconds that processes outside the benchmark used during each phase: the rows share
# the cores with whatever else the machine does, and one measured beside other work is
# slower than the code is. The machine's busy time (/proc/stat) less the benchmark's own
# and its ended children's (a child still running when a phase ends counts as other
# until it is reaped: the phases stop theirs).
OTHER_CPU_S: dict[str, float] = {}
_MARK: list[tuple[str, float, float]] = []


def _cpu_marks() -> tuple[float, float]:
    """(CPU seconds the machine has been busy, the benchmark's own and its ended children's)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]  # then steal: not this VM's
    busy = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    own = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, who))
    return busy, own


def _adopt_orphans() -> None:
    """Make this process the subreaper of its descendants (Linux): a server's worker left
    behind by its stopped parent (MLflow's gunicorn) comes back to the benchmark, which
    reaps it at the next phase mark, so its CPU counts as the benchmark's own."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _reap_ended() -> None:
    """Collect descendants that ended and that nothing waits for (adopted orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _phase(name: str | None) -> None:
    """Marks where a phase begins (None: where the last ends)."""
    _reap_ended()  # between phases every process a phase started has been waited for
    busy, own = _cpu_marks()
    if _MARK:
        last, busy0, own0 = _MARK.pop()
        OTHER_CPU_S[last] = round(max(0.0, (busy - busy0) - (own - own0)), 2)
    if name is not None:
        _MARK.append((name, busy, own))
        print(f"[{time.monotonic() - _STARTED:6.1f} s] {name} ...", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the same workload, scaled down")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow column")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka-mode row")
    parser.add_argument("--no-web", action="store_true", help="skip the web page (browser)")
    parser.add_argument("--no-trials", action="store_true", help="skip the per-trial sweep")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    scale = SCALES["quick" if args.quick else "full"]
    _adopt_orphans()
    work = Path(tempfile.mkdtemp(prefix="deardiary-bench-"))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f" ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "mode": "quick" if args.quick else "full",
        "scale": scale,
        "machine": machine(),
        "other_cpu_s": OTHER_CPU_S,  # filled as the phases end
    }
    try:
        dd: dict[str, Any] = {}
        _phase("client call")
        dd["call"] = ddw.client_call(work, scale["calls"])
        _phase("ingest over HTTP")
        dd["ingest_http"] = ddw.ingest_http(
            work, scale["ingest"], scale["procs"], scale["sustained_rounds"]
        )
        _phase("ingest into a local folder")
        dd["ingest_local"] = ddw.ingest_local(work, scale["ingest"], scale["procs"])
        if not args.no_kafka:
            _phase("ingest in Kafka mode")
            import kafka_workloads

            dd["ingest_kafka"] = kafka_workloads.ingest_kafka_median(
                work, scale["ingest"], scale["procs"]
            )
        _phase("replay")
        source = Path(dd["ingest_http"].pop("data"))
        dd["replay"] = ddw.replay_rate(source, work, dd["ingest_http"]["log_points"])
        _phase("disk per point, noisy curves")
        dd["disk_noisy"] = ddw.disk_noisy(work, scale["ingest"] * (scale["sustained_rounds"] + 1))
        _phase("series read")
        dd["series"] = ddw.series_read(work, scale["series"])
        _phase("sweep queries")
        dd["sweep"] = ddw.sweep_queries(work, scale["sweep"])
        _phase("system metrics and images (issue 14)")
        import tracking_workloads

        dd["system_metrics"] = tracking_workloads.system_metrics_overhead(work, 200)
        dd["images"] = tracking_workloads.image_logging(work, scale["image_steps"])
        if not args.no_web:
            _phase("the web page in a browser")
            try:
                import web_workloads

                dd["web"] = web_workloads.web_views(
                    work,
                    scale["web_table_runs"],
                    scale["web_chart_steps"],
                    mlflow=not args.no_mlflow,  # MLflow's UI on the same data beside it
                )
            except Exception as exc:  # no chromium here: the report says so
                traceback.print_exc()
                dd["web"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            _phase("the run page's media in a browser")
            try:
                import web_media

                dd["web_media"] = web_media.media_views(work, 50 if args.quick else 200)
            except Exception as exc:
                traceback.print_exc()
                dd["web_media"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        results["deardiary"] = dd
        if not args.no_mlflow:
            import mlflow_workloads as mlw

            _phase("MLflow")
            results["mlflow_version"] = mlw.ensure_installed()
            try:
                results["mlflow"] = mlw.run_all(
                    work,
                    scale["ml_ingest"],
                    scale["ml_procs"],
                    scale["ml_sweep"],
                    (scale["ml_sync_calls"], scale["ml_async_calls"]),
                )
            except Exception as exc:  # keep DearDiary's column; the report says what failed
                traceback.print_exc()
                results["mlflow_error"] = f"{type(exc).__name__}: {exc}"[:500]
            _phase("the MLflow client against both servers (issue 12)")
            import mlflow_compat_workloads

            try:
                results["mlflow_compat"] = mlflow_compat_workloads.run_all(work, scale)
            except Exception as exc:  # the report says what failed
                traceback.print_exc()
                results["mlflow_compat"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        if not args.no_trials:
            _phase("process-per-trial sweep")
            import trial_workloads

            results["trials"] = trial_workloads.run_all(work, scale, not args.no_mlflow)
    finally:
        _phase(None)
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["date"][:19].replace(":", "")
    (out / f"{stamp}-{results['mode']}.json").write_text(json.dumps(results, indent=2))
    docs = HERE.parent / "docs" / "benchmarks.md"
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(render(results))
    print(docs.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
