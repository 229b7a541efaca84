"""The process-per-trial sweep (issue 13), DearDiary and MLflow side by side.

A hyper-parameter sweep that starts a fresh `python` per trial pays the tracker's
start-up once per trial. Rows:

* the sweep: `trials` trials of `steps` x `keys` points, `parallel` processes at a time,
  each a fresh interpreter that imports the SDK, connects over HTTP, starts an iteration,
  logs and exits; timed from the first process started until every point is queryable
  (the first answer of a read, which waits for everything acknowledged before it; the
  points are counted after) -- DearDiary's: the median of `SWEEPS` sweeps, each listed in
  the results;
* start-up: `import deardiary` and `import mlflow` over a bare interpreter (wall time,
  and what ``python -X importtime`` says of the top-level import), `dd.connect(url)`;
* one whole trial process, wall and CPU, next to a bare interpreter's.

Trial processes run DearDiary as `pip install deardiary` gives it to a user: the wheel
built from this tree, installed (not editable) into a fresh virtualenv beside msgspec,
its one dependency -- not the development virtualenv, whose editable-install finder,
.pth files and dev packages (typing_extensions, which msgspec then imports) cost every
process tens of milliseconds a user does not pay; MLflow's trials run from MLflow's own
virtualenv likewise. With bytecode caches (PYTHONPYCACHEPREFIX, after one warm-up run),
as an installed package would have them; their spool folders are in the work folder.
The MLflow sweep runs `ml_trials` trials (fewer when its rate makes 64 take minutes)
and its time is scaled to `trials` at its rate, as the report says.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from procs import ROOT, free_port, running

from deardiary.pool import HttpPool

HERE = Path(__file__).resolve().parent
# DearDiary's sweep takes 2-3 s, so one run swings with whatever else the machine does in
# those seconds: it runs this many times into one server and the median is reported
# (MLflow's side runs once: it takes minutes, which averages it already).
SWEEPS = 3


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["XDG_CACHE_HOME"] = str(work / "trial-cache")  # the SDK's default spool folder
    return env


def light_install(work: Path) -> str:
    """A fresh virtualenv with deardiary installed from its wheel (not editable) and
    msgspec copied from this environment: what a user's `pip install deardiary` holds.
    Returns its python. No network: the wheel is built here, msgspec is on disk."""
    import msgspec

    venv, wheels, src = work / "trial-venv", work / "trial-wheel", work / "trial-wheel-src"
    if (venv / "bin" / "python").exists():
        return str(venv / "bin" / "python")
    src.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")
    for name in ("client", "schemas", "projections", "services"):
        shutil.copytree(ROOT / name, src / name, ignore=skip, dirs_exist_ok=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(wheels)]
    built = subprocess.run([*pip, "--no-build-isolation"], capture_output=True)
    if built.returncode != 0:  # this environment's setuptools cannot: pip fetches one
        subprocess.run(pip, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    for wheel in wheels.glob("deardiary-*.whl"):
        with zipfile.ZipFile(wheel) as whl:
            whl.extractall(site)  # a pure-Python wheel: unpacking it is installing it
    here = Path(msgspec.__file__).resolve().parent
    shutil.copytree(here, site / "msgspec", ignore=skip)
    for info in here.parent.glob("msgspec-*.dist-info"):
        shutil.copytree(info, site / info.name)
    return str(venv / "bin" / "python")


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one process run to completion."""
    cpu, t = _child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, _child_cpu() - cpu, done.stdout


def _median_run(cmd: list[str], env: dict[str, str], cwd: Path, runs: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu, _ = _timed(cmd, env, cwd)
        walls.append(wall * 1000)
        cpus.append(cpu * 1000)
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus)}


def _importtime_ms(python: str, module: str, env: dict[str, str], cwd: Path, runs: int) -> float:
    """Median cumulative time of the top-level import, as ``-X importtime`` reports it."""
    found = []
    for _ in range(runs):
        err = subprocess.run(
            [python, "-X", "importtime", "-c", f"import {module}"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module and not parts[2][1:2].isspace():
                found.append(int(parts[1]) / 1000)
    return statistics.median(found)


def _sweep(
    command: Callable[[int], list[str]],
    trials: int,
    parallel: int,
    env: dict[str, str],
    cwd: Path,
) -> dict[str, float]:
    """Run `trials` processes, `parallel` at a time; (seconds, CPU s of the processes).

    Sleeps until one of its trials ends (select on their pidfds) rather than polling: the
    benchmark's own process takes no CPU from the sweep it times, and other children of
    the benchmark are left alone."""
    cpu, started = _child_cpu(), time.perf_counter()
    waiting = list(range(trials))
    live: dict[int, subprocess.Popen[bytes]] = {}  # by pidfd
    try:
        while waiting or live:
            while waiting and len(live) < parallel:
                proc = subprocess.Popen(command(waiting.pop(0)), env=env, cwd=cwd)
                live[os.pidfd_open(proc.pid)] = proc
            ended, _, _ = select.select(list(live), [], [])
            for fd in ended:
                proc = live.pop(fd)
                os.close(fd)
                if proc.wait() != 0:
                    raise RuntimeError(f"trial process {proc.args!r} exited with {proc.returncode}")
    finally:  # a failed sweep leaves no trial running
        for fd, proc in live.items():
            proc.kill()
            proc.wait()
            os.close(fd)
    return {"processes_done_s": time.perf_counter() - started, "cpu_s": _child_cpu() - cpu}


@contextmanager
def _serving(data: Path, log: Path) -> Iterator[tuple[str, int]]:
    """`deardiary serve --port 0`: its URL as it prints it (a port picked beforehand could
    be taken by another process meanwhile), and its pid."""
    cmd = [sys.executable, "-m", "deardiary.services.cli", "serve", "--data", str(data)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", "0"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"serving .* on (http://\S+)", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"deardiary serve did not start; see {log}")
            time.sleep(0.05)
        yield found.group(1), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) a running process used so far (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {timeout:.0f} s: {what}")
        time.sleep(0.01)


def _until_queryable(
    started: float, small: Callable[[], int], rows: int, points: Callable[[], int], expect: int
) -> float:
    """Seconds from `started` (perf_counter) until a read sees the sweep, its points
    counted after the clock stops.

    Every trial's points were acknowledged before its process ended, and a read waits
    until the projections hold everything appended before it (read-your-writes), so the
    first answer of a small read (`small`, which must show `rows`) marks the moment every
    point is queryable; counting all the points (tens of ms over millions of them) would
    time the count too. The count then must show `expect`: a sweep that lost a point
    fails."""
    _wait_for(lambda: small() >= rows, "every trial's iteration queryable")
    seconds = time.perf_counter() - started
    seen = points()
    if seen != expect:
        raise RuntimeError(f"a read after the sweep saw {seen} points of {expect}")
    return seconds


def deardiary_side(work: Path, trials: int, parallel: int, steps: int, keys: int) -> dict[str, Any]:
    env, cwd = _env(work), work / "trials"
    cwd.mkdir(parents=True, exist_ok=True)
    py = light_install(work)
    out: dict[str, Any] = {"trials": trials, "parallel": parallel, "points": trials * steps * keys}
    out["install"] = "wheel, not editable, in a fresh virtualenv with msgspec only"
    shutil.rmtree(work / "trial-sweep", ignore_errors=True)  # a rerun in the same folder
    with _serving(work / "trial-sweep", work / "trials-serve.log") as (url, server_pid):
        trial = [py, str(HERE / "dd_trial.py"), url]
        pool = HttpPool(url, timeout=120)

        def count(table: str) -> int:
            q = {"q": f"SELECT count(*) AS n FROM {table}"}
            return int(pool.get("/api/v1/sql", params=q).json()["items"][0]["n"])

        _timed([*trial, "900001", str(steps), str(keys)], env, cwd)  # warm-up: bytecode caches
        # the warm-up's points visible: the sweep's come next
        _wait_for(lambda: count("metrics") == steps * keys, "the warm-up trial's points")
        sweeps: list[dict[str, float]] = []
        for k in range(SWEEPS):  # into the same server, one after another
            first, expect = k * trials, (1 + (k + 1) * trials) * steps * keys

            def command(n: int, first: int = first) -> list[str]:
                return [*trial, str(first + n), str(steps), str(keys)]

            server_cpu, t = _process_cpu(server_pid), time.perf_counter()
            sweep = _sweep(command, trials, parallel, env, cwd)
            sweep["seconds"] = _until_queryable(
                t,
                lambda: count("iterations"),
                1 + (k + 1) * trials,
                lambda: count("metrics"),
                expect,
            )
            after = _process_cpu(server_pid)
            if server_cpu is not None and after is not None:
                sweep["server_cpu_s"] = after - server_cpu  # ingest, folding, the count queries
            sweeps.append(sweep)
        out["sweeps"] = sweeps
        out.update(sorted(sweeps, key=lambda s: s["seconds"])[len(sweeps) // 2])  # the median
        # start-up, one process at a time
        out["bare"] = _median_run([py, "-c", "pass"], env, cwd, 15)
        out["import"] = _median_run([py, "-c", "import deardiary"], env, cwd, 15)
        out["import_importtime_ms"] = _importtime_ms(py, "deardiary", env, cwd, 7)
        out["msgspec_import"] = _median_run([py, "-c", "import msgspec"], env, cwd, 15)
        out["msgspec_importtime_ms"] = _importtime_ms(py, "msgspec", env, cwd, 7)
        connects = []
        probe = (
            "import sys, time\nimport deardiary as dd\nt = time.perf_counter()\n"
            "c = dd.connect(sys.argv[1])\nprint(time.perf_counter() - t)\nc.close()"
        )
        for _ in range(15):
            connects.append(float(_timed([py, "-c", probe, url], env, cwd)[2]) * 1000)
        out["connect_ms"] = statistics.median(connects)
        out["trial_process"] = _median_run([*trial, "900002", str(steps), str(keys)], env, cwd, 7)
        pool.close()
    return out


def mlflow_side(
    work: Path, trials: int, parallel: int, steps: int, keys: int, scaled_to: int
) -> dict[str, Any]:
    import mlflow_workloads as mlw

    env, cwd = _env(work), work / "ml-trials"
    cwd.mkdir(parents=True, exist_ok=True)
    py = str(mlw.PYTHON)
    data, port = work / "ml-trial-sweep", free_port()
    data.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    cmd = mlw.server_cmd(data, port)
    out: dict[str, Any] = {"trials": trials, "parallel": parallel, "scaled_to": scaled_to}
    trial = [py, str(HERE / "mlflow_trial.py"), url]
    with running(cmd, f"{url}/health", work / "ml-trials.log"):
        _timed([*trial, "900001", str(steps), str(keys)], env, cwd)  # warm-up; makes the experiment
        sweep = _sweep(
            lambda n: [*trial, str(n), str(steps), str(keys)], trials, parallel, env, cwd
        )
        out.update(sweep)
        out["seconds"] = sweep["processes_done_s"]  # log_batch returns once stored
        out["seconds_scaled"] = out["seconds"] * scaled_to / trials
        out["bare"] = _median_run([py, "-c", "pass"], env, cwd, 7)
        out["import"] = _median_run([py, "-c", "import mlflow"], env, cwd, 5)
        out["import_importtime_ms"] = _importtime_ms(py, "mlflow", env, cwd, 3)
        out["trial_process"] = _median_run([*trial, "900002", str(steps), str(keys)], env, cwd, 3)
    return out


def run_all(work: Path, scale: dict[str, Any], mlflow: bool) -> dict[str, Any]:
    trials, parallel = scale["trial_sweep"], scale["trial_parallel"]
    steps, keys = scale["trial_steps"], scale["trial_keys"]
    result: dict[str, Any] = {"deardiary": deardiary_side(work, trials, parallel, steps, keys)}
    if mlflow:
        try:
            ml_trials = scale["ml_trial_sweep"]
            result["mlflow"] = mlflow_side(work, ml_trials, parallel, steps, keys, trials)
        except Exception as exc:  # keep DearDiary's rows; the report says what failed
            result["mlflow_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return result


if __name__ == "__main__":  # just these rows: python bench/trial_workloads.py [--quick]
    import tempfile

    sys.path.insert(0, str(HERE))
    from run import SCALES

    picked = SCALES["quick" if "--quick" in sys.argv else "full"]
    with tempfile.TemporaryDirectory(prefix="deardiary-trials-") as tmp:
        print(json.dumps(run_all(Path(tmp), picked, "--no-mlflow" not in sys.argv), indent=2))
