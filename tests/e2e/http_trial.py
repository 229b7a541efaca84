"""One worker process of a sweep over HTTP: logs several trials under a parent iteration."""

from __future__ import annotations

import sys

import deardiary as dd


def main(url: str, spool: str, parent: str, worker: int, trials: int, points: int) -> None:
    client = dd.connect(url, spool_dir=spool)
    for t in range(trials):
        trial = worker * trials + t
        with client.start_iteration(
            project="sweep",
            experiment="grid",
            parent=parent,
            name=f"trial-{trial}",
            params={"lr": trial / 100, "trial": trial},
            capture_env=False,
        ) as it:
            for step in range(points):
                it.log_metrics({"loss": 1.0 / (step + 1) + trial, "acc": step / points})
    client.flush(timeout=120)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7]))
