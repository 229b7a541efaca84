"""Per-partition stores publish exports; the union view answers like one store would."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

from deardiary.projections.fold import Record
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.envelope import LogPosition
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.kafka_mode.partitions import PartitionStore
from tests.builders import metrics, records, sweep_start
from tests.store_snapshot import snapshot


def _split_by_partition(log: list[Record], partitions: int) -> dict[int, list[Record]]:
    """Spread records over partitions by key, with dense offsets per partition."""
    out: dict[int, list[Record]] = {}
    for pos, env in log:
        p = zlib.crc32(getattr(env, "key", "").encode()) % partitions
        rows = out.setdefault(p, [])
        rows.append((LogPosition(p, len(rows), pos.log_time), env))
    return out


def test_union_of_partition_exports_equals_a_single_store(tmp_path: Path) -> None:
    events = [*sweep_start(iteration="a"), *sweep_start(iteration="b")[2:]]
    events += [metrics(it, [("loss", float(i), -1) for i in range(50)]) for it in "ab" * 3]
    log = records(events)

    single = DuckDBProjectionStore(tmp_path / "single")
    from deardiary.projections.fold import fold, lookups_for

    single.apply(fold(single.load_prior(lookups_for(log)), log))
    expected = snapshot(single.reader())
    single.close()

    data = tmp_path / "data"
    view = ExportsView(data)
    assert view.reader().execute("SELECT count(*) FROM metrics").fetchall() == [(0,)]
    parts = _split_by_partition(log, 3)
    assert len(parts) >= 2
    for p, recs in parts.items():
        part = PartitionStore(data, p)
        part.apply(recs[:2])
        part.publish()
        part.apply(recs[2:])
        part.store.hot_points_limit = 10
        part.store.compact()
        part.publish()
        part.close()
    assert asyncio.run(view.reached({p: len(recs) for p, recs in parts.items()}, timeout=5))
    got = snapshot(view.reader())
    # offsets differ by construction (per-partition); compare what the data says
    for name in ("projects", "experiments", "params", "last_metrics"):
        assert got[name] == expected[name], name

    def strip(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return sorted(r[:5] for r in rows)  # iteration, key, step, value, recorded_at

    assert strip(got["metrics"]) == strip(expected["metrics"])
    assert len(got["metrics"]) == 300
    view.close()
