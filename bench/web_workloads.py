"""The web page measured in a real browser (Debian's chromium driven by Playwright).

Three views, each on data built straight into a log (like the other workloads):

* the runs table of an experiment with `table_runs` iterations (params and metrics
  as columns): milliseconds from navigation until the first rows show their values,
  and how long a jump to the table's middle takes to draw;
* a chart of 10 runs x `chart_steps` steps: milliseconds from navigation until drawn;
* an experiment with 1,000 metric keys: time to its first drawn charts, and the long
  tasks (PerformanceObserver 'longtask', > 50 ms on the main thread) meanwhile.

Not asserted anywhere: reported in docs/benchmarks.md by bench/report.py.
"""

from __future__ import annotations

import shutil
import tempfile
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


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def web_views(work: Path, table_runs: int, chart_steps: int, repeat: int = 3) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    data = work / "web"
    table_params, table_metrics = 10, 30
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
    }
    with (
        running(deardiary_serve(data, port, work / "web.log"), f"{url}/healthz", work / "web.log"),
        sync_playwright() as p,
    ):
        context, profile = _browser(p)
        try:
            page = context.new_page()
            page.set_default_timeout(120_000)
            table, scroll = [], []
            for _ in range(repeat):
                page.goto(f"{url}/e/{exps['table']}")
                page.wait_for_function(
                    "document.querySelectorAll('.grid-row[data-run]').length > 10"
                    " && !document.querySelector('.grid .muted')"
                )
                table.append(page.evaluate("performance.now()"))
                scroll.append(page.evaluate(SCROLL_PROBE))
            out["table_interactive_ms"] = round(_median(table), 1)
            out["table_scroll_ms"] = round(_median(scroll), 1)
            runs = ",".join(built["chart_runs"])
            chart = []
            for _ in range(repeat):
                page.goto(f"{url}/e/{exps['chart']}/charts?runs={runs}")
                page.wait_for_selector("figure.chart[data-metric=loss][data-drawn='1']")
                chart.append(page.evaluate("performance.now()"))
            out["chart_drawn_ms"] = round(_median(chart), 1)
            page.goto(f"{url}/e/{exps['keys']}/charts")
            page.wait_for_function(
                "document.querySelectorAll(\"figure.chart[data-drawn='1']\").length >= 4"
            )
            out["keys_first_charts_ms"] = round(page.evaluate("performance.now()"), 1)
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
    return out
