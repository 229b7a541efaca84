"""A sweep through `deardiary serve` as users run it: several processes, one parent,
the server down while logging starts, and the answers checked against the data."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

import deardiary as dd
from tests.e2e.serve_process import serve
from tests.ports import free_port

WORKERS, TRIALS, POINTS = 5, 10, 200


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("sweep")
    with serve(root / "data") as url:
        c = dd.connect(url, spool_dir=root / "spool-parent")
        parent = c.start_iteration(
            project="sweep", experiment="grid", name="parent", capture_env=False
        )
        c.flush()
        script = Path(__file__).with_name("http_trial.py")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    url,
                    str(root / f"spool-{w}"),
                    parent.id,
                    str(w),
                    str(TRIALS),
                    str(POINTS),
                ]
            )
            for w in range(WORKERS)
        ]
        assert [p.wait(timeout=300) for p in procs] == [0] * WORKERS
        parent.end()
        c.flush()
        c.close()
        yield url, parent.id, root


def test_exact_counts(sweep: tuple[str, str, Path]) -> None:
    url, parent, root = sweep
    c = dd.connect(url, spool_dir=root / "spool-check")
    counts = c.sql(
        "SELECT (SELECT count(*) FROM iterations WHERE parent_iteration_id IS NOT NULL) AS trials,"
        " (SELECT count(*) FROM metrics) AS points, (SELECT count(*) FROM params) AS params,"
        " (SELECT count(DISTINCT status) FROM iterations) AS statuses"
    ).to_pylist()[0]
    assert counts == {"trials": 50, "points": 50 * POINTS * 2, "params": 100, "statuses": 1}
    children = httpx.get(
        f"{url}/api/v1/iterations", params={"parent_iteration_id": parent, "limit": 7}
    ).json()
    assert children["total"] == 50 and len(children["items"]) == 7
    c.close()


def test_read_models_agree_with_the_data(sweep: tuple[str, str, Path]) -> None:
    url, _, _ = sweep
    exp = httpx.get(f"{url}/api/v1/experiments", params={"name": "grid"}).json()["items"][0]
    eid = exp["experiment_id"]
    board = httpx.get(
        f"{url}/api/v1/experiments/{eid}/leaderboard", params={"key": "loss", "goal": "min"}
    ).json()["items"]
    assert len(board) == 50
    assert board[0]["name"] == "trial-0" and board[0]["value"] == pytest.approx(1 / POINTS)
    best = httpx.get(f"{url}/api/v1/experiments/{eid}/best", params={"key": "loss"}).json()
    assert best["iteration_id"] == board[0]["iteration_id"]
    snap = httpx.get(
        f"{url}/api/v1/experiments/{eid}/snapshot", params={"key": "acc", "step": 10}
    ).json()["items"]
    assert len(snap) == 50 and {r["value"] for r in snap} == {10 / POINTS}
    names = httpx.get(f"{url}/api/v1/experiments/{eid}/metric-names").json()["items"]
    assert [(n["key"], n["iterations"]) for n in names] == [("acc", 50), ("loss", 50)]
    running = httpx.get(
        f"{url}/api/v1/experiments/{eid}/running-best", params={"key": "loss"}
    ).json()["items"]
    values = [r["value"] for r in running]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(1 / POINTS)
    pid = exp["project_id"]
    stats = httpx.get(f"{url}/api/v1/projects/{pid}/stats").json()
    assert (stats["iterations"], stats["succeeded"]) == (51, 51)
    ids = [r["iteration_id"] for r in board[:3]]
    compare = httpx.get(
        f"{url}/api/v1/compare",
        params={"iteration_id": ",".join(ids), "key": "loss", "max_points": 50, "format": "arrow"},
    )
    table = pa.ipc.open_stream(compare.content).read_all()
    assert set(table.column("iteration_id").to_pylist()) == set(ids)
    assert table.num_rows <= 150


def test_filter_language_over_http(sweep: tuple[str, str, Path]) -> None:
    url, _, _ = sweep
    found = httpx.get(
        f"{url}/api/v1/iterations",
        params={
            "filter": "params.trial < 5 and (metrics.loss.min < 2 or name = 'trial-4')",
            "order_by": "params.trial DESC",
        },
    ).json()
    assert [r["name"] for r in found["items"]] == ["trial-4", "trial-1", "trial-0"]
    for attack in (
        "params.trial = '1' or 1=1 --",
        "params.`x'); DROP TABLE iterations; --` = 1",
        "name = 'x' ; DELETE FROM params",
    ):
        r = httpx.get(f"{url}/api/v1/iterations", params={"filter": attack})
        assert r.status_code in (200, 400)
        if r.status_code == 200:
            assert r.json()["total"] == 0
    total = httpx.get(f"{url}/api/v1/iterations").json()["total"]
    assert total == 51  # the table is still there and whole


def test_downsampling_keeps_each_buckets_min_and_max(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as url:
        c = dd.connect(url, spool_dir=tmp_path / "spool")
        with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
            for step in range(10_000):
                value = math.sin(step / 50)
                if step == 6_543:
                    value = 1e6  # a spike random sampling would hide
                if step == 1_234:
                    value = -1e6
                it.log_metric("loss", value)
            it.log_metric("loss", float("nan"))  # step 10,000: beside numbers
            it.log_metric("loss", float("nan"), step=20_000)  # a bucket of its own
        down = c.metric_history(it.id, "loss", max_points=100)
        full = c.metric_history(it.id, "loss")
        assert full.num_rows == 10_002 and down.num_rows <= 100
        pairs = dict(
            zip(down.column("step").to_pylist(), down.column("value").to_pylist(), strict=True)
        )
        assert pairs[6_543] == 1e6 and pairs[1_234] == -1e6
        assert 10_000 not in pairs  # a NaN beside numbers is neither min nor max
        assert math.isnan(pairs[20_000])  # NaN survives Arrow end to end
        again = c.metric_history(it.id, "loss", max_points=100)

        def listing(t: pa.Table) -> list[tuple[int, str]]:
            return [
                (s, repr(v))
                for s, v in zip(t["step"].to_pylist(), t["value"].to_pylist(), strict=True)
            ]

        assert listing(again) == listing(down)  # deterministic (NaN compared as text)
        js = httpx.get(
            f"{url}/api/v1/iterations/{it.id}/metric-history",
            params={"key": "loss", "max_points": 100},
        ).json()["items"]
        assert {k: js[-1][k] for k in ("step", "value")} == {"step": 20_000, "value": "NaN"}
        c.close()


def test_a_client_started_while_the_server_is_down(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    c = dd.connect(url, spool_dir=tmp_path / "spool", max_buffer_points=5_000)
    with c.start_iteration(project="p", experiment="outage", capture_env=False) as it:
        for step in range(20_000):  # returns without a server: buffers, then spools
            it.log_metric("loss", float(step))
    with serve(tmp_path / "data", port):
        c.flush(timeout=120)
        rows = c.sql(
            f"SELECT count(*) AS n, count(DISTINCT step) AS steps, sum(value) AS total"
            f" FROM metrics WHERE iteration_id = '{it.id}'"
        ).to_pylist()
        assert rows == [{"n": 20_000, "steps": 20_000, "total": float(sum(range(20_000)))}]
        status = c.get(f"/api/v1/iterations/{it.id}")["status"]
        assert status == "SUCCEEDED"
    c.close()
