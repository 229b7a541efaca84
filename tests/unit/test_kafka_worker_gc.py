"""The Kafka worker keeps its long-lived heap out of garbage collections (`_settle_gc`).

Run in a child process: the collector's settings are process-global, and the suite's
other modules share this process under xdist."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json
import deardiary.services.kafka_mode.worker as worker
before = gc.get_freeze_count()
young = gc.get_threshold()[0]
worker._settle_gc()
print(json.dumps({
    "before": before,
    "after": gc.get_freeze_count(),
    "young_before": young,
    "threshold": list(gc.get_threshold()),
    "wanted": worker.GC_YOUNG * 700,
}))
"""


def test_settling_freezes_the_imported_heap_and_spaces_young_collections() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    # faust, aiokafka, DuckDB's bindings: tens of thousands of objects made after the
    # SDK's own freeze at `import deardiary`, never walked by a collection again
    assert found["after"] - found["before"] > 10_000
    assert found["young_before"] == 700  # CPython's default, before
    assert found["threshold"][0] == found["wanted"] > 700
