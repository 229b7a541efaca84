"""The web benchmark's data in MLflow's own SQLite store; runs with the MLflow virtualenv's
Python (bench/.mlflow-venv), never DearDiary's.

Usage: python mlflow_web_load.py DB ARTIFACTS TABLE_RUNS PARAMS METRICS CHART_RUNS STEPS
prints one JSON line (experiment ids, the chart's run ids, seconds taken).

The same data as bench/web_workloads.py builds for DearDiary: an experiment "table" of
TABLE_RUNS runs with PARAMS params and METRICS metrics (one point each, the same values),
an experiment "chart" of CHART_RUNS runs with a `loss` series of STEPS steps each. MLflow
creates its schema (SqlAlchemyStore: every migration), the experiments and the first run
of each through its store API; the rows of the other runs, params and points are inserted
in bulk into MLflow's own tables (its table definitions, its defaults), as the store's
log_batch would write them -- the REST API would take hours for 10 million points, and
only the UI's reads are measured.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mlflow.entities import ExperimentTag, Metric, Param, RunStatus, RunTag
from mlflow.store.tracking.dbmodels.models import (
    SqlLatestMetric,
    SqlMetric,
    SqlParam,
    SqlRun,
    SqlTag,
)
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

STORE: Any = SqlAlchemyStore  # untyped


def _rows(engine: object, table: object, rows: list[dict[str, object]]) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(table.insert(), rows)  # type: ignore[attr-defined]


def main() -> None:
    db, artifacts = Path(sys.argv[1]), Path(sys.argv[2])
    table_runs, n_params, n_metrics, chart_runs, steps = (int(a) for a in sys.argv[3:8])
    t0 = time.monotonic()
    store = STORE(f"sqlite:///{db}", str(artifacts))
    engine = store.engine
    now = int(time.time() * 1000)
    exps = {
        name: store.create_experiment(name, artifact_location=str(artifacts / name))
        for name in ("table", "chart")
    }
    for exp in exps.values():  # a model-training experiment: the UI opens on its runs
        store.set_experiment_tag(
            exp, ExperimentTag("mlflow.experimentKind", "custom_model_development")
        )

    def new_runs(exp: str, names: list[str]) -> list[str]:
        """The first through the store (its rows are the model for the rest), then bulk."""
        first = store.create_run(exp, "bench", now, [RunTag("mlflow.runName", names[0])], names[0])
        store.update_run_info(first.info.run_id, RunStatus.FINISHED, now + 1000, names[0])
        ids = [first.info.run_id]
        runs: list[dict[str, object]] = []
        tags: list[dict[str, object]] = []
        for i, name in enumerate(names[1:], start=1):
            run_id = uuid.uuid4().hex
            ids.append(run_id)
            runs.append(
                {
                    "run_uuid": run_id,
                    "name": name,
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": "bench",
                    "status": "FINISHED",
                    "start_time": now + i,
                    "end_time": now + i + 1000,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": str(artifacts / exp / run_id / "artifacts"),
                    "experiment_id": int(exp),
                }
            )
            tags.append({"key": "mlflow.runName", "value": name, "run_uuid": run_id})
            tags.append({"key": "mlflow.user", "value": "bench", "run_uuid": run_id})
        for part in range(0, len(runs), 5000):
            _rows(engine, SqlRun.__table__, runs[part : part + 5000])
        for part in range(0, len(tags), 5000):
            _rows(engine, SqlTag.__table__, tags[part : part + 5000])
        return ids

    table_ids = new_runs(exps["table"], [f"t-{n:05d}" for n in range(table_runs)])
    keys = [f"m{k:03d}" for k in range(n_metrics)]
    store.log_batch(
        table_ids[0],
        [Metric(k, ((0 * 31 + j) % 997) / 997, now, 0) for j, k in enumerate(keys)],
        [Param(f"p{k:02d}", str((0 * (k + 3)) % 97)) for k in range(n_params)],
        [],
    )
    params: list[dict[str, object]] = []
    metrics: list[dict[str, object]] = []
    for n, run_id in enumerate(table_ids[1:], start=1):
        params += [
            {"key": f"p{k:02d}", "value": str((n * (k + 3)) % 97), "run_uuid": run_id}
            for k in range(n_params)
        ]
        metrics += [
            {
                "key": key,
                "value": ((n * 31 + j) % 997) / 997,
                "timestamp": now,
                "step": 0,
                "is_nan": False,
                "run_uuid": run_id,
            }
            for j, key in enumerate(keys)
        ]
        if len(metrics) > 50_000:
            _rows(engine, SqlParam.__table__, params)
            _rows(engine, SqlMetric.__table__, metrics)
            _rows(engine, SqlLatestMetric.__table__, metrics)
            params, metrics = [], []
    if metrics:
        _rows(engine, SqlParam.__table__, params)
        _rows(engine, SqlMetric.__table__, metrics)
        _rows(engine, SqlLatestMetric.__table__, metrics)
    chart_ids = new_runs(exps["chart"], [f"c-{r}" for r in range(chart_runs)])
    engine.dispose()
    # ten million points: straight into the metrics table (the same columns), in one
    # transaction of plain sqlite3 (SQLAlchemy's executemany is ~10x slower here)
    db_conn = sqlite3.connect(db)
    for r, run_id in enumerate(chart_ids):
        value = 0.0
        for start in range(0, steps, 100_000):
            rows = []
            for s in range(start, min(steps, start + 100_000)):
                value = 1 / (1 + s / 1000) + (s * 7919 % 1000) / 20000 + r / 50
                rows.append(("loss", value, now + s, s, 0, run_id))
            db_conn.executemany(
                "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        db_conn.execute(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
            " VALUES ('loss', ?, ?, ?, 0, ?)",
            (value, now + steps - 1, steps - 1, run_id),
        )
        db_conn.commit()
    db_conn.close()
    out = {
        "experiments": exps,
        "chart_runs": chart_ids,
        "table_first_run": table_ids[0],
        "load_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
