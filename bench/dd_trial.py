"""One trial of the process-per-trial sweep, as a new user writes it: a fresh interpreter
imports the SDK, connects over HTTP, starts an iteration, logs `steps` x `keys` points
and exits (the SDK delivers at exit).

Usage: python dd_trial.py URL TRIAL_NUMBER STEPS KEYS"""

import sys

import deardiary as dd


def main(url: str, n: int, steps: int, keys: int) -> None:
    client = dd.connect(url)
    names = [f"metric_{k}" for k in range(keys)]
    with client.start_iteration(
        project="bench",
        experiment="process-per-trial",
        name=f"trial-{n}",
        params={"lr": 10 ** -(n % 5), "trial": n},
    ) as it:
        for step in range(steps):
            it.log_metrics({name: (step + k) / (n + 1) for k, name in enumerate(names)}, step)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
