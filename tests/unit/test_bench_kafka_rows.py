"""The Kafka rows of docs/benchmarks.md: every part's CPU and the arithmetic on the cores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from report import _kafka_check, _kafka_rows  # noqa: E402


def _run(**extra: float) -> dict[str, float]:
    return {
        "points": 1_000_000,
        "points_per_s": 300_000.0,
        "seconds": 3.3,
        "calls_done_s": 1.8,
        "acked_s": 1.9,
        "client_cpu_s": 1.8,
        "server_cpu_s": 2.0,
        **extra,
    }


def test_the_cpu_of_every_part_is_added_up_against_the_cores() -> None:
    rows = _kafka_rows(_run(broker_cpu_s=0.4, query_cpu_s=0.3, cores=2, load_avg=7.5))
    cpu, arithmetic = rows[1], rows[2]
    assert cpu[1] == "2.00 / 1.80 / 0.4 / 0.3" and cpu[4] == "load average 7.5 during the run"
    assert arithmetic[1] == (
        "4.50 s (clients 1.80 + workers 2.00 + broker 0.40 + query side 0.30); 444,444/s"
    )
    assert "the CPU rules it out here" in arithmetic[4]
    # what the clients leave: 2 cores over workers + broker + query side (2.70 s)
    assert (
        "the rest (workers, broker, query side) 2.70 s, which alone would allow 740,741/s"
        in (arithmetic[4])
    )


def test_a_missed_kafka_row_says_what_the_cores_allow() -> None:
    measured = _run(broker_cpu_s=0.4, query_cpu_s=0.3, cores=2)
    assert _kafka_check(measured) == (
        "**miss**: at the CPU it measured, 2 cores allow 444,444/s (below)"
    )
    assert _kafka_check(_run()) == "**miss**"  # an external broker: no arithmetic
    assert _kafka_check({**measured, "points_per_s": 1_200_000.0}) == "pass"


def test_an_external_broker_gets_no_arithmetic() -> None:
    rows = _kafka_rows(_run())  # DEARDIARY_TEST_KAFKA: its CPU is not ours to see
    assert len(rows) == 2 and rows[1][1] == "2.00 / 1.80 / — / —"


def test_bytes_per_point_rows_carry_the_target_for_embedded_and_kafka_mode() -> None:
    from report import _bytes_check, _kafka_bytes_rows

    assert _bytes_check(15.9) == "pass (≤ 16)" and _bytes_check(16.1) == "**miss** (≤ 16)"
    assert _bytes_check(None) == "—"
    parts = {"stores": 8.4, "segments and tiles": 0.0, "exports": 3.5, "other": 0.1}
    measured: dict[str, Any] = {**_run(bytes_per_point=12.0), "bytes_per_point_parts": parts}
    (row,) = _kafka_bytes_rows({**measured, "bytes_per_point_running": 41.0})
    assert "Kafka mode" in row[0] and row[4] == "pass (≤ 16)"
    assert row[1] == (
        "12.0 (stores 8.4 + segments and tiles 0 + exports 3.5 + other 0.1);"
        " while the workers ran (hot points uncompressed in WALs) 41.0"
    )
    assert _kafka_bytes_rows({**measured, "bytes_per_point": 28.7})[0][4] == "**miss** (≤ 16)"
    assert _kafka_bytes_rows({"skipped": "--no-kafka"}) == []


def test_the_workers_folder_is_told_apart_by_part(tmp_path: Path) -> None:
    from kafka_workloads import folder_parts

    files = {
        "partitions/p0/projections/state.duckdb": 100,
        "partitions/p0/projections/state.duckdb.wal": 50,
        "partitions/p0/projections-ab12/state.duckdb": 10,
        "partitions/p0/projections/segments/seg-1.parquet": 20,
        "partitions/p0/projections/tiles/seg-1.parquet": 5,
        "partitions/p0/export/e1/metric_points_hot.parquet": 30,
        "partitions/p0/projections.outdated-20261126/state.duckdb": 7,
        "partitions/p0/manifest.json": 3,
        "partitions/p0/projections/store-id": 1,
    }
    for name, size in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    assert folder_parts(tmp_path) == {
        "stores": 160,
        "segments and tiles": 25,
        "exports": 30,
        "other": 11,
    }


def test_the_kafka_row_is_the_median_run_and_names_every_run(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import kafka_workloads
    from report import _median_of

    rates = iter([900_000.0, 1_100_000.0, 1_000_000.0])
    folders: list[Path] = []

    def one_run(work: Path, total: int, procs: int) -> dict[str, Any]:
        folders.append(work)
        return _run(points_per_s=next(rates), seconds=len(folders))

    monkeypatch.setattr(kafka_workloads, "ingest_kafka", one_run)
    found = kafka_workloads.ingest_kafka_median(tmp_path, 1_000_000, 8, runs=3)
    assert found["points_per_s"] == 1_000_000.0 and found["seconds"] == 3  # the third run
    assert found["runs_points_per_s"] == [900_000.0, 1_100_000.0, 1_000_000.0]
    assert len(set(folders)) == 3  # each run its own broker, topic and folder
    assert _median_of(found["runs_points_per_s"]) == (
        "; the median of 3 runs: 900,000 / 1,100,000 / 1,000,000"
    )


def test_a_skipped_kafka_run_is_reported_as_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    import kafka_workloads

    monkeypatch.setattr(
        kafka_workloads, "ingest_kafka", lambda work, total, procs: {"skipped": "no broker"}
    )
    assert kafka_workloads.ingest_kafka_median(tmp_path, 10, 1) == {"skipped": "no broker"}
