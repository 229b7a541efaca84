"""One partition's projection store, and publishing it for readers in other processes.

A worker folds into the store; `publish()` writes every relation as Parquet into a new
numbered export folder (temp, fsync, rename) and then replaces `manifest.json`
atomically. Readers only ever follow a manifest, and old exports (and replaced metric
segments) are kept for a grace period, so a reader never finds a file gone mid-query.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from deardiary.projections.fold import Record
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.services.projector import apply_or_park

EXPORTED: tuple[str, ...] = (
    "projects",
    "experiments",
    "iterations",
    "params",
    "last_metrics",
    "logs",
    "artifacts",
    "models",
    "model_versions",
    "events",
    "conflicts",
    "parked_events",
    "users",
    "permissions",
    "access_tokens",
    "metric_points_hot",
)
GRACE_S = 60.0


def partition_dir(data: Path, partition: int) -> Path:
    return Path(data) / "partitions" / f"p{partition}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class PartitionStore:
    def __init__(self, data: Path, partition: int) -> None:
        self.partition = partition
        self.root = partition_dir(data, partition)
        self.store = DuckDBProjectionStore(self.root / "projections", retire_after_s=GRACE_S)
        self.exports = self.root / "export"
        self.exports.mkdir(parents=True, exist_ok=True)
        self._published_at = 0.0
        self._dirty = True

    def next_offset(self) -> int:
        return self.store.next_offsets().get(self.partition, 0)

    def apply(self, batch: Sequence[Record]) -> None:
        """Fold a batch of this partition's records (redelivered ones are skipped)."""
        if batch:
            apply_or_park(self.store, batch)  # a record the store refuses is parked
            self._dirty = True

    def compact_if_due(self) -> None:
        """Housekeeping for the worker's timer: compact the hot points once enough."""
        self.store.maybe_compact()

    def publish(self, min_interval_s: float = 0.0) -> bool:
        """Export every relation and point the manifest at it; False when throttled."""
        now = time.time()
        if not self._dirty or now - self._published_at < min_interval_s:
            return False
        seq = time.time_ns()
        target = self.exports / f"{seq}"
        tmp = self.exports / f".{seq}.tmp"
        tmp.mkdir()
        conn = self.store.conn
        conn.execute("BEGIN TRANSACTION")  # one consistent snapshot for every file
        try:
            files = {}
            for table in EXPORTED:
                path = tmp / f"{table}.parquet"
                conn.execute(f"COPY (SELECT * FROM {table}) TO '{path}' (FORMAT parquet)")
                files[table] = str(target / f"{table}.parquet")
            offsets = self.store.next_offsets()
            segments = [str(p) for p in self.store.segment_paths()]
        finally:
            conn.execute("COMMIT")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        manifest = {
            "partition": self.partition,
            "next_offsets": {str(p): o for p, o in offsets.items()},
            "tables": files,
            "segments": segments,
            "published_at": now,
        }
        _atomic_write(self.root / "manifest.json", json.dumps(manifest))
        self._published_at, self._dirty = now, False
        self._prune(keep=target.name)
        return True

    def _prune(self, keep: str) -> None:
        now = time.time()
        for old in self.exports.iterdir():
            if old.name != keep and now - old.stat().st_mtime > GRACE_S:
                shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        self.publish()
        self.store.close()


def read_manifests(data: Path) -> list[dict[str, object]]:
    found = []
    for manifest in sorted((Path(data) / "partitions").glob("p*/manifest.json")):
        try:
            found.append(json.loads(manifest.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now; the next refresh sees it
    return found
