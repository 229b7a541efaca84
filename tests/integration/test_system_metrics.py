"""System metrics (issue 14): the SDK samples the machine and the process in a background
thread into the metric group "system", stops with the iteration, and a sample has every
figure the README lists."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.system_metrics import GROUP, Sampler, SystemMonitor

EXPECTED = {
    "cpu.percent",
    "cpu.process_percent",
    "memory.percent",
    "memory.used_mb",
    "memory.process_rss_mb",
    "disk.read_mb_s",
    "disk.write_mb_s",
    "network.sent_mb_s",
    "network.recv_mb_s",
}


def test_a_sample_has_every_figure() -> None:
    sampler = Sampler()
    first = sampler.sample()
    assert set(first) >= EXPECTED
    assert all(v >= 0 for v in first.values()), first
    assert 0 < first["memory.percent"] <= 100 and first["memory.process_rss_mb"] > 1


def _wait_for(condition: object, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {limit_s} s for {what}"
        time.sleep(0.02)


def test_sampled_into_the_system_group_until_the_iteration_ends(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    with c.start_iteration(
        project="p",
        experiment="e",
        capture_env=False,
        system_metrics=True,
        system_metrics_interval_s=0.05,
    ) as it:
        it.log_metric("loss", 1.0)
        monitor = it.start_system_metrics(0.05)  # a second one: two threads, same group
        _wait_for(lambda: monitor.samples >= 2, "two samples")
    monitor.thread.join(timeout=30)
    assert not monitor.thread.is_alive()  # stopped with the iteration
    c.flush()
    rows = c.sql('SELECT key, "group", count FROM last_metrics ORDER BY "group", key').to_pylist()
    system = {r["key"] for r in rows if r["group"] == GROUP}
    assert system >= EXPECTED
    assert [r["key"] for r in rows if r["group"] == ""] == ["loss"]
    history = c.sql(
        "SELECT step FROM metrics WHERE \"group\" = 'system' AND key = 'cpu.percent' ORDER BY step"
    ).to_pylist()
    assert [h["step"] for h in history] == list(range(len(history)))  # steps of its own
    c.close()


def test_a_bad_interval_is_refused(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    with (
        c.start_iteration(project="p", experiment="e", capture_env=False) as it,
        pytest.raises(dd.ClientError, match="interval"),
    ):
        SystemMonitor(it, 0)
    c.close()
