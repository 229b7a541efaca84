"""The web page measured in a real browser (Debian's chromium driven by Playwright).

Three views, each on data built straight into a log (like the other workloads):

* the runs table of an experiment with `table_runs` iterations (params and metrics
  as columns): milliseconds from navigation until the first rows show their values,
  and how long a jump to the table's middle takes to draw;
* a chart of 10 runs x `chart_steps` steps: milliseconds from navigation until drawn;
* an experiment with 1,000 metric keys: time to its first drawn charts, and the long
  tasks (PerformanceObserver 'longtask', > 50 ms on the main thread) meanwhile.

Each time is `performance.now()` in the page at the first animation frame where the
condition holds (Playwright polls on every frame; no round trip counted), median of
`repeat` loads after a warm-up load (assets cached, as a user's second visit). Where the
time went is kept beside it: when the page's script asked its first API call, and each
API call's start and end (Resource Timing).

MLflow's UI, side by side (`mlflow=True`): the same data loaded into MLflow's own store
(bench/mlflow_web_load.py, in MLflow's virtualenv), its server started on loopback with
job execution off, and the same browser timing its experiment runs table (navigation
until more than 10 rows show their run names) and its chart view of the 10 runs
(navigation until the 10 `loss` lines are drawn by Plotly).

Not asserted anywhere: reported in docs/benchmarks.md by bench/report.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dd_workloads import _append
from procs import deardiary_serve, free_port, running

from deardiary.schemas import ids
from deardiary.schemas.events import (
    Event,
    ExperimentCreated,
    IterationStarted,
    MetricsLogged,
    ParamsLogged,
    ProjectCreated,
)
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log.sqlite import SqliteEventLog

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCROLL_PROBE = """
() => new Promise((done) => {
const g = document.querySelector('.grid');
const t0 = performance.now();
g.scrollTop = g.scrollHeight / 2;
g.scrollLeft = g.scrollWidth / 2;
const wait = () => {
const rows = [...document.querySelectorAll('.grid-row[data-run]')];
const loading = document.querySelector('.grid .muted');
const shown = (r) => r.getBoundingClientRect().top > 0
&& r.getBoundingClientRect().top < innerHeight;
if (rows.length && !loading && rows.some(shown)) done(performance.now() - t0);
else requestAnimationFrame(wait);
};
requestAnimationFrame(wait);
})
"""
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""


def build(
    data: Path, table_runs: int, table_params: int, table_metrics: int, chart_steps: int
) -> dict[str, Any]:
    log = SqliteEventLog(str(data / "log.db"))
    pid = ids.project_id("web")
    exps = {name: ids.experiment_id(pid, name) for name in ("table", "chart", "keys")}
    events: list[Event] = [ProjectCreated(project_id=pid, name="web")]
    events += [ExperimentCreated(experiment_id=e, project_id=pid, name=n) for n, e in exps.items()]

    def flush() -> None:
        nonlocal events
        _append(log, events)
        events = []

    for n in range(table_runs):
        it = f"t-{n:05d}"
        keys = [f"m{k:03d}" for k in range(table_metrics)]
        events += [
            IterationStarted(iteration_id=it, experiment_id=exps["table"], project_id=pid, name=it),
            ParamsLogged(
                iteration_id=it,
                params={f"p{k:02d}": str((n * (k + 3)) % 97) for k in range(table_params)},
            ),
            MetricsLogged.from_points(
                it,
                keys,
                [((n * 31 + k) % 997) / 997 for k in range(table_metrics)],
                [0] * table_metrics,
                [0] * table_metrics,
            ),
        ]
        if len(events) > 3000:
            flush()
    flush()
    chart_runs = [f"c-{r}" for r in range(10)]
    for r, it in enumerate(chart_runs):
        _append(
            log,
            [
                IterationStarted(
                    iteration_id=it, experiment_id=exps["chart"], project_id=pid, name=it
                )
            ],
        )
        chunk = 100_000
        for start in range(0, chart_steps, chunk):
            n = min(chunk, chart_steps - start)
            values = [
                1 / (1 + (start + i) / 1000) + ((start + i) * 7919 % 1000) / 20000 + r / 50
                for i in range(n)
            ]
            _append(
                log,
                [
                    MetricsLogged.from_points(
                        it, ["loss"] * n, values, list(range(start, start + n)), [0] * n
                    )
                ],
            )
    for r in range(3):
        it = f"k-{r}"
        keys = [f"metric/{k:04d}" for k in range(1000)]
        events = [
            IterationStarted(iteration_id=it, experiment_id=exps["keys"], project_id=pid, name=it)
        ]
        for step in range(50):
            events.append(
                MetricsLogged.from_points(
                    it,
                    keys,
                    [((k + step + r) % 100) / 100 for k in range(1000)],
                    [step] * 1000,
                    [0] * 1000,
                )
            )
        flush()
    log.close()
    with EmbeddedStore(data) as store:
        store.catch_up()
        store.store.compact()
    return {"experiments": exps, "chart_runs": chart_runs}


def _browser(playwright: Any) -> Any:
    profile = tempfile.mkdtemp(prefix="deardiary-bench-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=FLAGS,
        viewport={"width": 1400, "height": 900},
        bypass_csp=True,  # the timing probes are evaluated scripts
    )
    context.add_init_script(LONG_TASKS)
    return context, profile


TABLE_READY = (
    "document.querySelectorAll('.grid-row[data-run]').length > 10"
    " && !document.querySelector('.grid .muted') && performance.now()"
)
CHART_DRAWN = (
    "document.querySelector(\"figure.chart[data-metric=loss][data-drawn='1']\")"
    " && performance.now()"
)
KEYS_DRAWN = (
    "document.querySelectorAll(\"figure.chart[data-drawn='1']\").length >= 4 && performance.now()"
)
API_CALLS = """
() => performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/api/') || e.name.includes('/ajax-api/'))
  .map((e) => {
    const path = new URL(e.name).pathname.replace(/[0-9a-f]{32}/g, '{id}');
    return [path, Math.round(e.startTime), Math.round(e.responseEnd)];
  })
"""


def _until(page: Any, condition: str) -> float:
    """performance.now() at the first animation frame where `condition` holds."""
    return float(page.wait_for_function(condition, polling="raf").json_value())


def _loads(page: Any, url: str, condition: str, repeat: int) -> tuple[list[float], list[Any]]:
    """A warm-up load, then `repeat` timed loads of `url`: each one's time to `condition`
    and its API calls."""
    times, calls = [], []
    for n in range(1 + repeat):
        page.goto("about:blank")  # a new document each time (a hash change is not one)
        page.goto(url)
        at = _until(page, condition)
        if n == 0:
            continue
        times.append(at)
        calls.append(page.evaluate(API_CALLS))
    return times, calls


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _of_median(times: list[float], calls: list[Any]) -> Any:
    """The API calls of the load whose time was the median."""
    return calls[times.index(_median(times))]


def web_views(
    work: Path, table_runs: int, chart_steps: int, repeat: int = 3, mlflow: bool = True
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    data = work / "web"
    table_params, table_metrics = 10, 30
    started = time.monotonic()
    built = build(data, table_runs, table_params, table_metrics, chart_steps)
    exps = built["experiments"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {
        "table_runs": table_runs,
        "table_columns": 6 + table_params + 3 * table_metrics,
        "chart_runs": 10,
        "chart_steps": chart_steps,
        "keys": 1000,
        "build_s": round(time.monotonic() - started, 1),
        "load_before": os.getloadavg()[0],
    }
    with (
        running(deardiary_serve(data, port, work / "web.log"), f"{url}/healthz", work / "web.log"),
        sync_playwright() as p,
    ):
        context, profile = _browser(p)
        try:
            page = context.new_page()
            page.set_default_timeout(120_000)
            table_url = f"{url}/e/{exps['table']}"
            table, calls = _loads(page, table_url, TABLE_READY, repeat)
            out["table_interactive_ms"] = round(_median(table), 1)
            out["table_api"] = _of_median(table, calls)
            scroll = []
            for _ in range(repeat):
                page.goto(table_url)
                _until(page, TABLE_READY)
                scroll.append(page.evaluate(SCROLL_PROBE))
            out["table_scroll_ms"] = round(_median(scroll), 1)
            runs = ",".join(built["chart_runs"])
            chart_url = f"{url}/e/{exps['chart']}/charts?runs={runs}"
            chart, calls = _loads(page, chart_url, CHART_DRAWN, repeat)
            out["chart_drawn_ms"] = round(_median(chart), 1)
            out["chart_api"] = _of_median(chart, calls)
            page.goto(f"{url}/e/{exps['keys']}/charts")
            out["keys_first_charts_ms"] = round(_until(page, KEYS_DRAWN), 1)
            page.wait_for_timeout(2000)
            tasks = page.evaluate("window.__longTasks")
            out["keys_long_tasks"] = len(tasks)
            out["keys_longest_task_ms"] = round(max((d for _, d in tasks), default=0.0), 1)
            out["keys_blocking_ms"] = round(sum(max(0.0, d - 50) for _, d in tasks), 1)
            out["keys_charts_in_dom"] = page.evaluate(
                "document.querySelectorAll('figure.chart').length"
            )
            out["keys_charts_drawn"] = page.evaluate(
                "document.querySelectorAll(\"figure.chart[data-drawn='1']\").length"
            )
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    out["load_after"] = os.getloadavg()[0]
    if mlflow:
        try:
            out["mlflow"] = mlflow_views(
                work, table_runs, table_params, table_metrics, chart_steps // ML_CHART_SCALE
            )
        except Exception as exc:  # keep DearDiary's rows; the report says what failed
            traceback.print_exc()
            out["mlflow"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


# -- MLflow's UI on the same data ---------------------------------------------------------

ML_CHART_SCALE = 10
"""MLflow's chart is measured on series this many times shorter (10 x 100,000 steps at full
size): its chart's sampled read (metrics/get-history-bulk-interval: window functions in
SQLite over each series' points) took 273 s for 10 x 1,000,000 steps on the benchmark
machine (load ~8) -- four loads would take 20 minutes. The report says the steps it had."""

ML_TABLE_READY = (
    "[...document.querySelectorAll('.ag-row [col-id=\"attributes.`Run Name`\"]')]"
    ".filter((c) => c.textContent.trim()).length > 10 && performance.now()"
)
ML_CHART_DRAWN = (
    "[...document.querySelectorAll('.js-plotly-plot .trace.scatter path.js-line')]"
    ".filter((p) => (p.getAttribute('d') || '').length > 100).length >= 10 && performance.now()"
)


@contextmanager
def _mlflow_server(data: Path, log: Path) -> Iterator[str]:
    """MLflow's tracking server over `data`/mlflow.db (stopped with all it started)."""
    import mlflow_workloads

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = mlflow_workloads.server_cmd(data, port)
    with running(cmd, f"{url}/health", log, start_timeout=300):
        yield url


def mlflow_views(
    work: Path,
    table_runs: int,
    table_params: int,
    table_metrics: int,
    chart_steps: int,
    repeat: int = 3,
) -> dict[str, Any]:
    """The same views in MLflow's UI (version of bench/mlflow_workloads.py), same browser."""
    import mlflow_workloads
    from playwright.sync_api import sync_playwright

    version = mlflow_workloads.ensure_installed()
    data = work / "mlflow-web"
    data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    loaded = subprocess.run(
        [
            str(mlflow_workloads.PYTHON),
            str(Path(__file__).resolve().parent / "mlflow_web_load.py"),
            str(data / "mlflow.db"),
            str(data / "art"),
            *(str(n) for n in (table_runs, table_params, table_metrics, 10, chart_steps)),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    built = json.loads(loaded.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {
        "version": version,
        "table_runs": table_runs,
        "chart_steps": chart_steps,
        "load_s": round(time.monotonic() - started, 1),
    }
    exps = built["experiments"]
    ui = "workflowType=machine_learning"
    with _mlflow_server(data, work / "mlflow-web.log") as url, sync_playwright() as p:
        context, profile = _browser(p)
        try:
            page = context.new_page()
            page.set_default_timeout(300_000)
            table_url = f"{url}/#/experiments/{exps['table']}/runs?{ui}"
            table, calls = _loads(page, table_url, ML_TABLE_READY, repeat)
            out["table_rows_ms"] = round(_median(table), 1)
            out["table_api"] = _of_median(table, calls)
            out["table_rows_shown"] = page.evaluate(
                "document.querySelectorAll('.ag-center-cols-container .ag-row').length"
            )
            chart_url = f"{url}/#/experiments/{exps['chart']}/runs?{ui}&compareRunsMode=CHART"
            chart, calls = _loads(page, chart_url, ML_CHART_DRAWN, repeat)
            out["chart_drawn_ms"] = round(_median(chart), 1)
            out["chart_api"] = _of_median(chart, calls)
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    return out
