"""The process-per-trial sweep's harness: it runs every trial, fails on a failed one, stops
its clock when a read sees the sweep and then counts every point, and reports the median
of DearDiary's sweeps with each of them named."""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from report import render  # noqa: E402
from trial_workloads import _sweep, _until_queryable  # noqa: E402


def test_a_sweep_runs_every_trial_at_most_parallel_at_a_time(tmp_path: Path) -> None:
    script = (
        "import os, sys, time\n"
        "d = sys.argv[1]\n"
        "open(os.path.join(d, 'live-' + sys.argv[2]), 'w').close()\n"
        "time.sleep(0.05)\n"
        "seen = len([n for n in os.listdir(d) if n.startswith('live-')])\n"
        "open(os.path.join(d, 'done-%s-%d' % (sys.argv[2], seen)), 'w').close()\n"
        "os.remove(os.path.join(d, 'live-' + sys.argv[2]))\n"
    )
    out = _sweep(
        lambda n: [sys.executable, "-c", script, str(tmp_path), str(n)], 9, 3, {}, tmp_path
    )
    done = sorted(p.name for p in tmp_path.glob("done-*"))
    assert sorted(int(name.split("-")[1]) for name in done) == list(range(9))
    assert max(int(name.split("-")[2]) for name in done) <= 3
    assert out["processes_done_s"] > 0 and out["cpu_s"] > 0


def test_a_failed_trial_stops_the_sweep(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with 3"):
        _sweep(
            lambda n: [sys.executable, "-c", f"raise SystemExit({3 if n == 2 else 0})"],
            4,
            2,
            {},
            tmp_path,
        )


def test_the_report_names_each_sweep_and_shows_the_median() -> None:
    newest = sorted((ROOT / "bench" / "results").glob("*-full.json"))[-1]
    results = json.loads(newest.read_text())
    trials = copy.deepcopy(results["trials"])
    d = trials["deardiary"]
    d["sweeps"] = [{**d, "seconds": s} for s in (2.5, 1.75, 3.25)]
    d["seconds"] = 2.5
    page = render({**results, "trials": trials})
    assert "the median of 3 sweeps into one server, 2.50, 1.75, 3.25 s" in page
    row = next(line for line in page.splitlines() if "g. process-per-trial sweep" in line)
    assert "| 2.5 |" in row or "| 2.50 |" in row, row


def test_the_clock_stops_when_a_read_sees_the_sweep_before_the_points_are_counted() -> None:
    answers = iter([3, 7, 9, 10])
    counted_at: list[float] = []

    def points() -> int:
        counted_at.append(time.perf_counter())
        return 1_000

    started = time.perf_counter()
    seconds = _until_queryable(started, lambda: next(answers), 10, points, 1_000)
    assert next(answers, None) is None  # asked until it showed every row, not once more
    assert len(counted_at) == 1 and seconds <= counted_at[0] - started


def test_a_sweep_that_lost_points_fails() -> None:
    with pytest.raises(RuntimeError, match="saw 999 points of 1000"):
        _until_queryable(time.perf_counter(), lambda: 10, 10, lambda: 999, 1_000)
