"""One trial process of a sweep: logs into a shared data folder and exits."""

from __future__ import annotations

import sys

import deardiary as dd


def main(store: str, spool: str, trial: int, points: int) -> None:
    client = dd.connect(store, spool_dir=spool)
    with client.start_iteration(
        project="sweep",
        experiment="lr-search",
        params={"lr": 10.0**-trial, "trial": trial},
        external_id=f"trial-{trial}",
        capture_env=False,
    ) as it:
        for step in range(points):
            it.log_metrics({"loss": 1.0 / (step + 1 + trial), "acc": step / points})
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
