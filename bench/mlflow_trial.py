"""MLflow's side of one process-per-trial sweep trial (runs with the MLflow virtualenv's
Python): import, connect, start a run with its params, log `steps` x `keys` points with
MLflow's batched call (1,000 metrics per `log_batch`, its fastest path), end the run.

Usage: python mlflow_trial.py URL TRIAL_NUMBER STEPS KEYS"""

import sys
import time

import mlflow
from mlflow.entities import Metric


def main(url: str, n: int, steps: int, keys: int) -> None:
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("process-per-trial")
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name=f"trial-{n}") as run:
        mlflow.log_params({"lr": 10 ** -(n % 5), "trial": n})
        names = [f"metric_{k}" for k in range(keys)]
        batch: list[Metric] = []
        now = int(time.time() * 1000)
        for step in range(steps):
            for k, name in enumerate(names):
                batch.append(Metric(name, (step + k) / (n + 1), now, step))
            if len(batch) >= 1000:
                client.log_batch(run.info.run_id, metrics=batch)
                batch = []
        if batch:
            client.log_batch(run.info.run_id, metrics=batch)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
