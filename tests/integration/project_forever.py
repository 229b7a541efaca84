"""Subprocess for the crash test: project a data folder batch by batch, announcing progress."""

from __future__ import annotations

import sys

from deardiary.services.embedded import EmbeddedStore


def main(data: str) -> None:
    store = EmbeddedStore(data)
    store.store.hot_points_limit = 3000  # compact often, so kills land mid-compaction too
    assert store.projector is not None
    store.projector.max_records = 3
    while store.projector.step() > 0:
        print("batch", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
