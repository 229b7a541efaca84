"""docs/benchmarks.md, rendered from a results JSON — nothing in it is typed by hand."""

from __future__ import annotations

import math
from typing import Any

from mlflow_compat_workloads import report_section as mlflow_compat_section
from web_media import media_section
from web_report import web_section


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}" if abs(value) >= 1 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(dd: float | None, ml: float | None, higher_is_better: bool) -> str:
    if dd is None or ml is None or not dd or not ml:
        return "—"
    r = dd / ml if higher_is_better else ml / dd
    return f"{r:,.1f}x"


def _check(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "—"
    ok = value >= target if higher_is_better else value <= target
    return "pass" if ok else "**miss**"


BYTES_PER_POINT = 16
"""BRIEF §5: disk ≤ 16 bytes per metric point (embedded and Kafka mode)."""


def _bytes_check(value: float | None) -> str:
    verdict = _check(value, BYTES_PER_POINT, False)
    return verdict if verdict == "—" else f"{verdict} (≤ {BYTES_PER_POINT})"


def _kafka_bytes_rows(kafka: dict[str, Any]) -> list[tuple[str, Any, Any, str, str]]:
    """Kafka mode's disk per point: the workers' folder once they stopped, by part
    (bench/kafka_workloads.py folder_parts), and while they ran (their WALs)."""
    if not kafka.get("bytes_per_point"):
        return []
    parts = kafka.get("bytes_per_point_parts") or {}
    running = kafka.get("bytes_per_point_running")
    value = _fmt(kafka["bytes_per_point"])
    if parts:
        value += " (" + " + ".join(f"{name} {_fmt(v)}" for name, v in parts.items()) + ")"
    if running is not None:
        value += f"; while the workers ran (hot points uncompressed in WALs) {_fmt(running)}"
    return [
        (
            f"f. bytes on disk per metric point, Kafka mode: the workers' folder after"
            f" {kafka['points']:,} points, stopped (partition stores' DuckDB files, their"
            " segments and tiles, export entries, the rest)",
            value,
            None,
            "",
            _bytes_check(kafka["bytes_per_point"]),
        )
    ]


def _flat(rss: list[float]) -> str:
    """Flat: after the first round (warm-up), the last round's RSS is within 10% of the
    second's."""
    if len(rss) < 3:
        return "—"
    return "pass (flat)" if rss[-1] <= rss[1] * 1.10 else "**miss** (grows)"


def _kafka_cpu(kafka: dict[str, Any]) -> tuple[dict[str, float], int] | None:
    """CPU seconds per 1,000,000 points of each part, and the cores they shared; None with
    an external broker (its CPU is not measured here)."""
    if "broker_cpu_s" not in kafka:
        return None
    parts = [("clients", "client_cpu_s"), ("workers", "server_cpu_s")]
    parts += [("broker", "broker_cpu_s"), ("query side", "query_cpu_s")]
    per_million = {
        part: kafka[key] * 1_000_000 / kafka["points"] for part, key in parts if key in kafka
    }
    return per_million, int(kafka.get("cores") or 1)  # of the machine the benchmark ran on


def _kafka_check(kafka: dict[str, Any]) -> str:
    """The Kafka row's verdict; a miss says what the cores allow at the measured CPU cost."""
    verdict = _check(kafka.get("points_per_s"), 1_000_000, True)
    cpu = _kafka_cpu(kafka) if kafka.get("points_per_s") else None
    if verdict == "pass" or cpu is None:
        return verdict
    per_million, cores = cpu
    ceiling = cores / sum(per_million.values()) * 1_000_000
    return f"{verdict}: at the CPU it measured, {cores} cores allow {ceiling:,.0f}/s (below)"


def _kafka_cpu_ceiling(kafka: dict[str, Any]) -> tuple[str, Any, Any, str, str] | None:
    """The CPU arithmetic of the Kafka row: clients, workers, broker and query side share
    the cores, so together they reach at most cores / (CPU seconds per point)."""
    cpu = _kafka_cpu(kafka)
    if cpu is None:
        return None
    per_million, cores = cpu
    total = sum(per_million.values())
    ceiling = cores / total * 1_000_000
    listed = " + ".join(f"{part} {sec:.2f}" for part, sec in per_million.items())
    note = f"1,000,000/s on {cores} cores needs them together below {cores} s per 1,000,000 points"
    if ceiling < 1_000_000:
        clients = per_million["clients"]
        rest = total - clients
        note += (
            f"; the clients alone use {clients:.2f} s (the SDK's log_metric calls and"
            f" encoding, the same in every mode) and the rest (workers, broker, query side)"
            f" {rest:.2f} s, which alone would allow {cores / rest * 1_000_000:,.0f}/s"
            if rest > 0
            else f"; the clients alone use {clients:.2f} s"
        )
        note += ": the CPU rules it out here"
    return (
        "b. Kafka mode: CPU seconds per 1,000,000 points, and the points/s the cores could"
        " reach at that cost",
        f"{total:.2f} s ({listed}); {ceiling:,.0f}/s",
        None,
        "",
        note,
    )


def _median_of(runs: list[float] | None) -> str:
    """A row that is the median of several runs names them all."""
    if not runs or len(runs) < 2:
        return ""
    return f"; the median of {len(runs)} runs: " + " / ".join(_fmt(v) for v in runs)


def _kafka_rows(kafka: dict[str, Any]) -> list[tuple[str, Any, Any, str, str]]:
    """Where the Kafka-mode figure's time goes, and the broker's own ceiling for the same
    bytes (bench/kafka_workloads.py: broker_alone)."""
    if not kafka.get("points_per_s"):
        return []
    rows: list[tuple[str, Any, Any, str, str]] = [
        (
            "b. Kafka mode: all calls returned / all acknowledged / all visible (s)",
            f"{_fmt(kafka['calls_done_s'], 2)} / {_fmt(kafka['acked_s'], 2)}"
            f" / {_fmt(kafka['seconds'], 2)}",
            None,
            "",
            "",
        ),
        (
            "b. Kafka mode: CPU seconds used by the workers / by all clients / by the broker"
            " / by the query side (exports view)",
            f"{_fmt(kafka['server_cpu_s'], 2)} / {_fmt(kafka['client_cpu_s'], 2)}"
            f" / {_fmt(kafka.get('broker_cpu_s'), 2)} / {_fmt(kafka.get('query_cpu_s'), 2)}",
            None,
            "",
            f"load average {kafka['load_avg']:.1f} during the run" if "load_avg" in kafka else "",
        ),
    ]
    ceiling = _kafka_cpu_ceiling(kafka)
    if ceiling:
        rows.append(ceiling)
    alone = kafka.get("broker_alone")
    if alone:
        rows.append(
            (
                "b. the tests' broker (Tansu) alone, the same records: produce / consume /"
                " one then the other (points/s)",
                f"{_fmt(alone['produce_points_per_s'])} / {_fmt(alone['consume_points_per_s'])}"
                f" / {_fmt(alone['points_per_s'])}",
                None,
                "",
                "",
            )
        )
    return rows


def render(r: dict[str, Any]) -> str:
    dd = r["deardiary"]
    ml = r.get("mlflow") or {}
    mlc, mli, mls, mlw = (ml.get(k, {}) for k in ("call", "ingest", "series", "sweep"))
    hi = dd["ingest_http"]
    sus = hi["sustained"]
    noisy = dd.get("disk_noisy")  # results from before this row have none
    kafka = dd.get("ingest_kafka", {"skipped": "--no-kafka"})
    s = r["scale"]
    ml_note = (
        f"MLflow {r.get('mlflow_version', '')}: ingest ran {s['ml_ingest']:,} points from"
        f" {s.get('ml_procs', s['procs'])} processes (scaled down at its rate),"
        f" its series read is over the {_fmt(mls.get('points'))}-point series"
        f" that ingest wrote, and its sweep has {s['ml_sweep']:,} runs."
        if ml
        else f"MLflow failed: {r['mlflow_error']}"
        if "mlflow_error" in r
        else "MLflow was not run (--no-mlflow)."
    )
    rows: list[tuple[str, Any, Any, str, str]] = [
        (
            "a. `log_metric` call, median (µs)",
            dd["call"]["median_us"],
            mlc.get("sync_median_us"),
            _ratio(dd["call"]["median_us"], mlc.get("sync_median_us"), False),
            _check(dd["call"]["median_us"], 2.0, False),
        ),
        (
            "a. `log_metric` call, p99 (µs)",
            dd["call"]["p99_us"],
            mlc.get("sync_p99_us"),
            _ratio(dd["call"]["p99_us"], mlc.get("sync_p99_us"), False),
            "",
        ),
        (
            "a. MLflow async `log_metric`, median / p99 (µs)",
            None,
            f"{_fmt(mlc.get('async_median_us'))} / {_fmt(mlc.get('async_p99_us'))}"
            if mlc
            else None,
            "",
            "",
        ),
        (
            f"b. end-to-end ingest over HTTP, {s['procs']} processes (points/s)",
            dd["ingest_http"]["points_per_s"],
            mli.get("points_per_s"),
            _ratio(dd["ingest_http"]["points_per_s"], mli.get("points_per_s"), True),
            _check(dd["ingest_http"]["points_per_s"], 1_000_000, True),
        ),
        (
            "b. ingest advantage over MLflow's batched ingest",
            None,
            None,
            _ratio(dd["ingest_http"]["points_per_s"], mli.get("points_per_s"), True),
            _check(
                dd["ingest_http"]["points_per_s"] / mli["points_per_s"] if mli else None,
                100,
                True,
            ),
        ),
        (
            "b. HTTP ingest: all calls returned / all acknowledged / all visible (s)",
            f"{_fmt(hi['calls_done_s'], 2)} / {_fmt(hi['acked_s'], 2)} / {_fmt(hi['seconds'], 2)}",
            None,
            "",
            "",
        ),
        (
            "b. HTTP ingest: CPU seconds used by the server / by all clients",
            f"{_fmt(hi['server_cpu_s'], 2)} / {_fmt(hi['client_cpu_s'], 2)}",
            None,
            "",
            "",
        ),
        (
            f"b. HTTP ingest, each of {len(sus['points_per_s_each_round'])} rounds into the same"
            " server (points/s; later rounds include compacting into Parquet)",
            " / ".join(_fmt(v) for v in sus["points_per_s_each_round"]),
            None,
            "",
            "",
        ),
        (
            f"b. end-to-end ingest in Kafka mode, {s['procs']} processes (points/s)"
            + _median_of(kafka.get("runs_points_per_s")),
            kafka.get("points_per_s") or f"skipped: {kafka.get('skipped')}",
            None,
            "",
            _kafka_check(kafka),
        ),
        *_kafka_rows(kafka),
        (
            f"b. end-to-end ingest into a local folder, {s['procs']} processes (points/s)",
            dd["ingest_local"]["points_per_s"],
            None,
            "",
            "",
        ),
        (
            f"c. {s['series']:,}-point series, full (ms)",
            dd["series"]["full_ms"],
            mls.get("full_ms"),
            "",
            _check(dd["series"]["full_ms"], 100, False),
        ),
        (
            "c. same series, full, lz4 buffers as the SDK asks (Accept: …; codecs=lz4) (ms)",
            dd["series"].get("full_lz4_ms"),
            None,
            "",
            "",
        ),
        (
            "c. same series downsampled to 1,000 points (ms)",
            dd["series"]["downsampled_ms"],
            None,
            "",
            _check(dd["series"]["downsampled_ms"], 20, False),
        ),
        (
            f"d. summary of {s['sweep']:,} iterations, best loss sorted (ms; MLflow's sweep"
            f" is {s['ml_sweep']:,} runs)",
            dd["sweep"]["summary_ms"],
            mlw.get("summary_ms"),
            "",
            _check(dd["sweep"]["summary_ms"], 200, False),
        ),
        (
            f"d. filtered search over params and metrics (ms; {s['sweep']:,} iterations,"
            f" MLflow's {s['ml_sweep']:,} runs: not the same size)",
            dd["sweep"]["search_ms"],
            mlw.get("search_ms"),
            "",
            "",
        ),
        (
            "e. replay, rebuilding all projections (points/s)",
            dd["replay"]["points_per_s"],
            None,
            "",
            _check(dd["replay"]["points_per_s"], 1_000_000, True),
        ),
        (
            "f. bytes on disk per metric point",
            dd["ingest_http"]["bytes_per_point"],
            ml.get("bytes_per_point"),
            _ratio(dd["ingest_http"]["bytes_per_point"], ml.get("bytes_per_point"), False),
            _bytes_check(dd["ingest_http"]["bytes_per_point"]),
        ),
        *_kafka_bytes_rows(kafka),
        (
            "f. bytes on disk per metric point, noisy curves: all (log + segments and tiles"
            " per point; the DuckDB file, bounded by the hot-table limit)",
            f"{_fmt(noisy['bytes_per_point'])} ({_fmt(noisy['log_bytes_per_point'])}"
            f" + {_fmt(noisy['segments_bytes_per_point'])};"
            f" {_fmt(noisy['duckdb_file_mb'])} MB)"
            if noisy
            else None,
            None,
            "",
            _bytes_check(noisy["bytes_per_point"]) if noisy else "",
        ),
        (
            "f. peak RSS, server (MB)",
            dd["ingest_http"]["server_peak_rss_mb"],
            ml.get("server_peak_rss_mb"),
            "",
            "",
        ),
        (
            f"f. server RSS after each of {len(sus['server_rss_mb_after_each_round'])} rounds"
            f" of {s['ingest']:,} points (MB)",
            " / ".join(_fmt(v) for v in sus["server_rss_mb_after_each_round"])
            + f" (peak {_fmt(sus.get('server_peak_rss_mb'))})",
            None,
            "",
            _flat(sus["server_rss_mb_after_each_round"]),
        ),
        (
            "f. peak RSS, one client process (MB)",
            dd["ingest_http"]["client_peak_rss_mb"],
            mli.get("client_peak_rss_mb"),
            "",
            "",
        ),
        *_trial_rows(r.get("trials")),
        *_tracking_rows(dd),
    ]
    m = r["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{r['command']}` on {r['date']} ({r['mode']} run). Do not edit by hand:"
        " rerun the benchmark.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gb']} GB, {m['platform']}; "
        f"Python {m['python']}, DuckDB {m['duckdb']}, PyArrow {m['pyarrow']}.",
        "",
        *_other_cpu_note(r.get("other_cpu_s")),
        ml_note,
        "",
        "| measure | DearDiary | MLflow | DearDiary advantage | BRIEF §5 target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, a, b, ratio, check in rows:
        lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {ratio} | {check} |")
    lines += [
        "",
        "Targets: call ≤ 2 µs median; ingest ≥ 1,000,000 points/s and ≥ 100x MLflow's batched",
        "ingest; 1M-point series ≤ 100 ms full and ≤ 20 ms downsampled; 10,000-iteration",
        "summary ≤ 200 ms; replay ≥ 1,000,000 points/s; disk ≤ 16 bytes per metric point",
        "(embedded and Kafka mode); memory flat under load; a",
        "process-per-trial sweep ≥ 100x MLflow, `import deardiary` ≤ 30 ms over a bare",
        "interpreter, `dd.connect(url)` ≤ 2 ms (issue 13).",
        "",
        *_trial_note(r.get("trials"), r["machine"]["cpus"]),
        "How each row is measured: `bench/dd_workloads.py` and `bench/mlflow_workloads.py`.",
        "Ingest is timed from the first logging call of any process to the moment a query sees",
        "the last point (MLflow: until the last `log_batch` of 1,000 metrics returned). The",
        "client processes stay up, idle, until then: their interpreters' shutdown is not",
        "timed (it would compete with the server for the same 2 cores).",
        "",
        *_why(r),
        *web_section(r),
        *media_section(r),
        *mlflow_compat_section(r),
        *_profiles(dd),
    ]
    return "\n".join(lines) + "\n"


def _other_cpu_note(other: dict[str, float] | None) -> list[str]:
    """CPU that processes outside the benchmark used during each phase: whether the run
    had the machine to itself."""
    if not other:
        return []
    busy = {name: cpu for name, cpu in other.items() if cpu >= 1.0}
    if not busy:
        return [
            "The run had the machine to itself: processes outside the benchmark used less"
            " than 1 CPU-second in each phase.",
            "",
        ]
    each = "; ".join(f"{name} {cpu:g}" for name, cpu in busy.items())
    return [
        f"CPU seconds used by processes outside the benchmark during its phases: {each}"
        " (other phases below 1). Those phases shared the cores, and their rows are slower"
        " than this code is.",
        "",
    ]


def _trial_floor(t: dict[str, Any], cpus: int) -> list[str]:
    """What the process-per-trial target asks of each trial, next to what the interpreter
    alone costs: the arithmetic behind the sweep row."""
    d, m = t["deardiary"], t.get("mlflow")
    if "bare" not in d or "cpu_s" not in d:
        return []
    trials = d["trials"]
    floor_ms = d["bare"]["cpu_ms"]  # python started, nothing imported: a trial imports no msgspec
    floor_s = trials * floor_ms / 1000 / cpus
    per_trial = d["cpu_s"] / trials * 1000
    server = d.get("server_cpu_s")
    text = (
        f"The floor of the sweep row: a process that only starts Python used {floor_ms:.0f} ms"
        f" of CPU here, so {trials} trial processes need {floor_s:.2f} s of {cpus} cores"
        " before importing or logging anything. Measured:"
        f" {per_trial:.0f} ms of CPU per trial process (import, connect, the iteration with"
        " its environment snapshot, the points, the exit flush)"
        + (f" and {server / trials * 1000:.0f} ms of the server's per trial" if server else "")
        + "."
    )
    if m:
        budget = m["seconds_scaled"] / 100 * cpus / trials * 1000
        text += (
            f" 100x MLflow's {m['seconds_scaled']:.0f} s is {m['seconds_scaled'] / 100:.2f} s,"
            f" {budget:.0f} ms of CPU per trial for trial process and server together, against"
            f" {floor_ms:.0f} ms that a bare interpreter takes: at best"
            f" {m['seconds_scaled'] / floor_s:.0f}x MLflow on this machine."
        )
        if server:
            used = d["cpu_s"] + server
            text += (
                f" The CPU this sweep used (trial processes and server: {used:.2f} s) fits in"
                f" {used / cpus:.2f} s of {cpus} cores, {m['seconds_scaled'] * cpus / used:.0f}x"
                f" MLflow if the sweep had the cores to itself; it took {d['seconds']:.2f} s."
            )
    return [text, ""]


def _sweep_runs(d: dict[str, Any]) -> str:
    """DearDiary's sweep is the median of several, each named here."""
    runs = d.get("sweeps") or []
    if len(runs) < 2:
        return ""
    each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    return f" (DearDiary's row: the median of {len(runs)} sweeps into one server, {each} s)"


def _trial_note(t: dict[str, Any] | None, cpus: int = 2) -> list[str]:
    if not t:
        return []
    m = t.get("mlflow")
    ml = (
        f" MLflow ran {m['trials']} trials and its time is scaled to {m['scaled_to']} at its"
        " rate (its trials log with `log_batch`, 1,000 metrics a request)."
        if m
        else f" MLflow: {t['mlflow_error']}."
        if "mlflow_error" in t
        else ""
    )
    d = t["deardiary"]
    why = []
    if "msgspec_import" in d:
        total = d["import"]["cpu_ms"] - d["bare"]["cpu_ms"]
        own = d["msgspec_import"]["cpu_ms"] - d["bare"]["cpu_ms"]
        why = [
            f"`import deardiary` takes {total:.0f} ms of CPU over a bare interpreter. It does"
            " not import msgspec, its one dependency, nor does a trial process: the events a"
            " trial writes are encoded by the standard library (`schemas/wire.py`). Importing"
            " msgspec (with what it imports: typing, re, enum, datetime, decimal, uuid) alone"
            f" takes {own:.0f} ms on this machine: what each trial process no longer pays.",
            "",
        ]
    return [
        *why,
        *_trial_floor(t, cpus),
        "The g. rows (`bench/trial_workloads.py`): each trial process of the sweep imports the",
        "SDK, connects over HTTP, starts an iteration (with its environment snapshot), logs",
        "and exits, as `bench/dd_trial.py` and `bench/mlflow_trial.py` show; timed from the",
        "first process started until a query sees every point"
        + _sweep_runs(d)
        + " (the first answer of a small read, which waits for everything acknowledged"
        " before it; the points are counted after the clock stops). DearDiary's trials run"
        " from a",
        "non-editable install (the wheel in a fresh virtualenv with msgspec, as users get it),",
        "MLflow's from its own virtualenv. Start-up rows are medians of one process at a time,",
        f"with bytecode caches.{ml}",
        "",
    ]


def _tracking_rows(dd: dict[str, Any]) -> list[tuple[str, Any, Any, str, str]]:
    """Issue 14: system-metrics sampling and image logging."""
    rows: list[tuple[str, Any, Any, str, str]] = []
    sm, im = dd.get("system_metrics"), dd.get("images")
    if sm:
        rows.append(
            (
                f"g. system metrics: CPU per sample (ms), {sm['figures_per_sample']} figures",
                sm["cpu_ms_per_sample"],
                None,
                "",
                "",
            )
        )
        rows.append(
            (
                f"g. system metrics at a {sm['interval_s']:g} s interval (% of one core)",
                sm["percent_of_one_core"],
                None,
                "",
                _check(sm["percent_of_one_core"], 1.0, False),
            )
        )
    if im:
        for where, prefix in (("over HTTP", "http"), ("into a folder", "local")):
            rows.append(
                (
                    f"g. a 256x256 RGB image per step {where}: in the loop's call / until"
                    " durable (ms per image)",
                    f"{_fmt(im.get(f'{prefix}_call_ms'))} / {_fmt(im[f'{prefix}_ms_per_image'])}",
                    None,
                    "",
                    "",
                )
            )
    return rows


def _trial_rows(t: dict[str, Any] | None) -> list[tuple[str, Any, Any, str, str]]:
    """The process-per-trial sweep (bench/trial_workloads.py), when it was run."""
    if not t:
        return []
    d, m = t["deardiary"], t.get("mlflow") or {}
    per = d["points"] // d["trials"]

    def over(side: dict[str, Any]) -> float | None:
        return side["import"]["wall_ms"] - side["bare"]["wall_ms"] if side else None

    def process(side: dict[str, Any]) -> str | None:
        if not side:
            return None
        p, b = side["trial_process"], side["bare"]
        return (
            f"{_fmt(p['wall_ms'])} / {_fmt(p['cpu_ms'])}"
            f" (bare {_fmt(b['wall_ms'])} / {_fmt(b['cpu_ms'])})"
        )

    ml_s = m.get("seconds_scaled")
    sweep_ratio = _ratio(d["seconds"], ml_s, False)
    return [
        (
            f"g. process-per-trial sweep: {d['trials']} trials x {per:,} points,"
            f" {d['parallel']} at a time, each a fresh `python`, until queryable (s)",
            d["seconds"],
            ml_s,
            sweep_ratio,
            _check(d["seconds"] and ml_s / d["seconds"] if ml_s else None, 100, True),
        ),
        (
            "g. `import deardiary` (the wheel in a clean virtualenv, msgspec its one"
            " dependency) / `import mlflow` over a bare interpreter (ms, wall)",
            over(d),
            over(m),
            _ratio(over(d), over(m), False),
            _check(over(d), 30, False),
        ),
        (
            "g. the same import as `python -X importtime` reports it (ms)"
            + ("; in brackets, `import msgspec` alone" if "msgspec_importtime_ms" in d else ""),
            (
                f"{_fmt(d['import_importtime_ms'])} ({_fmt(d['msgspec_importtime_ms'])})"
                if "msgspec_importtime_ms" in d
                else d["import_importtime_ms"]
            ),
            m.get("import_importtime_ms"),
            "",
            _check(d["import_importtime_ms"], 30, False),
        ),
        ("g. `dd.connect(url)` (ms)", d["connect_ms"], None, "", _check(d["connect_ms"], 2, False)),
        (
            f"g. one {per:,}-point trial process, wall / CPU (ms), and a bare interpreter's",
            process(d),
            process(m),
            _ratio(
                d["trial_process"]["wall_ms"], (m.get("trial_process") or {}).get("wall_ms"), False
            ),
            "",
        ),
    ]


def _why(r: dict[str, Any]) -> list[str]:
    """For each missed target, what the measurements themselves say about it."""
    dd, cpus = r["deardiary"], r["machine"]["cpus"]
    out: list[str] = []
    hi = dd["ingest_http"]
    if hi["points_per_s"] < 1_000_000:
        cpu = hi["server_cpu_s"] + hi["client_cpu_s"]
        out.append(
            f"- **Ingest** is bound by CPU: server and clients used {cpu:.2f} CPU-seconds for"
            f" {hi['points']:,} points, so {cpus} cores need at least {cpu / cpus:.2f} s"
            f" (at most {hi['points'] / (cpu / cpus):,.0f} points/s) even with perfect overlap."
            f" The clients' calls had all returned after {hi['calls_done_s']:.2f} s and every"
            f" point was acknowledged after {hi['acked_s']:.2f} s; the remaining"
            f" {hi['seconds'] - hi['acked_s']:.2f} s is the projector (one thread, one DuckDB"
            " transaction per batch) folding the backlog -- the server profile below."
        )
    rates = hi["sustained"]["points_per_s_each_round"]
    if min(rates) < 1_000_000:
        out.append(
            f"- **Sustained ingest** ranged from {min(rates):,.0f} to {max(rates):,.0f}"
            " points/s over the rounds: in a round where the hot table passes 2,000,000"
            " points the projector also compacts it into a sorted Parquet segment and its"
            " tiles (`_publish_segment` in the server profile below), on the same thread."
        )
    kafka = dd.get("ingest_kafka", {})
    if kafka.get("points_per_s"):
        out.append(
            f"- **Kafka mode** ({kafka['workers']} workers, {kafka['partitions']} partitions)"
            " shares the same 2 cores between the clients, the broker and the workers, and a"
            " point is visible only once a worker has published its partition's exports"
            " (every 0.5 s while records keep coming, 0.1 s after the stream drained) and"
            " the query side has followed the new manifests, so its figure includes that"
            " interval."
        )
        alone = kafka.get("broker_alone")
        if alone:
            out.append(
                f"  The broker alone (Tansu, memory storage, on the same cores) took"
                f" {alone['produce_s']:.2f} s to take the same {alone['records']:,} records"
                f" ({alone['mb']:.1f} MB) from one pipelined producer and"
                f" {alone['consume_s']:.2f} s to hand them to one consumer: a ceiling of"
                f" {alone['produce_points_per_s']:,.0f} points/s in and"
                f" {alone['consume_points_per_s']:,.0f} out before anything is decoded or"
                " folded. "
                + (
                    "Through this broker alone the same points cannot pass at 1,000,000/s on"
                    " these cores: it is the ceiling of this row (Apache Kafka, the"
                    " deployment path in deploy/, is not measured here)."
                    if min(alone["produce_points_per_s"], alone["consume_points_per_s"]) < 1_000_000
                    else "The broker is not the ceiling: the rest of the time is the clients,"
                    " decoding, folding, publishing and loading the exports on the same cores."
                )
            )
    rep = dd["replay"]
    if rep["points_per_s"] < 1_000_000:
        top = ", ".join(f"{name} {sec:.2f} s" for sec, name in rep["profile"][:4])
        out.append(
            f"- **Replay** of {rep['points']:,} points took {rep['seconds']:.2f} s; under"
            f" cProfile the heaviest calls were {top} (full list below)."
        )
    for kind, target in (("full", 100), ("downsampled", 20)):
        ms = dd["series"][f"{kind}_ms"]
        if ms > target:
            prof = dd["series"][f"{kind}_profile"]
            ops = ", ".join(f"{name} {t:.1f} ms" for t, name in prof["operators"][:3])
            out.append(
                f"- **Series read ({kind})** took {ms:.1f} ms over HTTP; in-process the read"
                f" took {prof.get('read_ms', '?')} ms, of which DuckDB spent"
                f" {prof['total_ms']:.1f} ms in {prof.get('statements', 1)} statements, most of"
                f" it in {ops}."
                + (
                    f" With lz4 buffers (Accept: …; codecs=lz4) the same read took"
                    f" {dd['series']['full_lz4_ms']:.1f} ms: most of the plain read is its"
                    " 32 bytes a point through httpx (a bare server's static body of that size"
                    " costs httpx ~70-80 ms here, a raw socket ~20)."
                    if kind == "full" and dd["series"].get("full_lz4_ms")
                    else ""
                )
            )
    if not out:
        return []
    return ["## Why a target is missed, and other slow rows", "", *out, ""]


def _ranked(rows: list[Any], unit: str) -> list[str]:
    return [f"    {value:>8}{unit}  {name}" for value, name in rows]


def _profiles(dd: dict[str, Any]) -> list[str]:
    hi = dd["ingest_http"]["server_profile"]
    rep = dd["replay"]["profile"]
    lines = [
        "## Profiles",
        "",
        f"Server during the last sustained round of the HTTP ingest (py-spy, {hi['samples']:,}"
        " samples"
        " of threads that were running, 100 Hz). Share of samples by thread:",
        "",
        *_ranked(hi["threads"], "%"),
        "",
        "Where those samples were (innermost frame):",
        "",
        *_ranked(hi["self"], "%"),
        "",
        "DearDiary functions on the stack (inclusive):",
        "",
        *_ranked(hi["inclusive"], "%"),
        "",
        "Replay under cProfile, cumulative seconds:",
        "",
        *_ranked(rep, " s"),
        "",
    ]
    for kind in ("full", "downsampled"):
        prof = dd["series"][f"{kind}_profile"]
        lines += [
            f"Series read ({kind}) in-process: {prof.get('read_ms', '?')} ms"
            f" ({prof.get('read_cpu_ms', '?')} ms of CPU); under DuckDB's profiler its"
            f" {prof.get('statements', 1)} statements took {prof['total_ms']} ms,"
            f" {prof['cpu_ms']} ms of CPU; by operator, summed over them:",
            "",
            *_ranked(prof["operators"], " ms"),
            "",
        ]
    return lines
