"""One partition's projection store, and publishing it incrementally for readers elsewhere.

A worker folds into the store; `publish()` adds an *entry* to the partition's export chain
and then replaces `manifest.json` atomically. An entry is a folder of Parquet files with
what changed over a range of offsets [from, to):

* rows of the upserted relations (iterations, params, last_metrics, users, ...) whose
  keys the batches in the range wrote -- the store tracks them as it applies;
* rows of the appended relations (events, logs, conflicts, parked_events) and the metric
  points not compacted yet, by offset: everything at or after `from`.

A merged entry does not rewrite the points: it names the files of points its entries
held (`points`: [path, end offset] pairs, in offset order), which stay where they were
written until they are all below `hot_below`; re-encoding them at every level of the
merge cost about as much CPU as writing them the first time.

The manifest lists the chain (oldest first), the partition's metric segments and their
tiles (immutable Parquet files written by the store's compaction), and `hot_below`: the
points below that offset are in the segments, those at or after it in the chain. A reader
applies the entries after its own offset, in order; an upserted row replaces the row
with its key, appended rows and points are added (only those at or after the reader's
offset, so an entry reaching back before it is harmless).

Publishing costs what changed, not the partition's history. The chain is kept short in
the background, as a log-structured merge: once FANOUT entries of one level follow each
other, a thread merges them into one entry of the next level (upserted rows deduplicated
to their last version, points already in segments dropped), which replaces them in the
next manifest. Each row is merged once per level, and no publish waits for a merge.

After an unclean stop the keys changed since the last manifest are not known: the first
publish is then a *base* entry holding every row (from offset 0), and readers simply
apply it over what they have. Each store has an id (`store-id` in its folder); a reader
that sees another id for a partition (a rebuilt store) starts that partition afresh.

A store that is damaged, outdated or lost is rebuilt from the log, and until it has
caught up to where the published manifest was, that manifest stays: the new store
publishes nothing before, so readers go on reading the old exports whole, then switch in
one refresh. A damaged or outdated store is rebuilt *beside* the old one, in a folder of
its own (``projections-<id>``, named by the partition's `store-folder` file), so the old
segments and tiles stay where the old manifest names them; the old folder is moved aside
GRACE_S after the first manifest that no longer names it, its chain's entries likewise.

Files are written beside their final name, fsynced and renamed; entries merged away and
replaced segments are kept GRACE_S, so a reader following an older manifest never finds
a file gone. With an `ExportsUpload` the same files and manifest go to an S3-compatible
bucket as well (services/kafka_mode/object_store.py), for query services on machines
that do not share this folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import duckdb

from deardiary.projections.fold import Record
from deardiary.projections.integrity import STATE_FILE, ProjectionDamaged, ProjectionOutdated
from deardiary.projections.store import POINT_COLUMNS, DuckDBProjectionStore
from deardiary.projections.writes import PRIMARY_KEYS, Key, Writes, row_key
from deardiary.services.projector import apply_or_park
from deardiary.services.rebuild import fsync_dir, move_aside

_log = logging.getLogger("deardiary.exports")

EXPORT_VERSION = 3
"""Of the manifests this release writes. 3: merged entries name their points' files
(`points`) instead of holding a copy; a reader of version 2 would miss those points, so
it sees no manifest at all. Manifests of version 2 (whose entries all hold their own
points) are read as before."""
READ_VERSIONS = frozenset({2, EXPORT_VERSION})
UPSERTED: tuple[str, ...] = tuple(PRIMARY_KEYS)
APPENDED: tuple[str, ...] = ("events", "logs", "conflicts", "parked_events")
HOT = "metric_points_hot"
EXPORTED: tuple[str, ...] = (*UPSERTED, *APPENDED, HOT)
GRACE_S = 60.0
FANOUT = 8
BASE_LEVEL = 1000  # a base entry is never merged: it is already everything
MANIFEST = "manifest.json"
COMPRESSION = "lz4_raw"
"""Of the export entries. They are short-lived (merged, and their points compacted into
zstd segments) and written on the ingest path: zstd cost the worker about half a CPU
second per million points, lz4 about 30% less than that. Any codec reads back."""
ENTRY_FORMAT = "V2"
"""The Parquet format of the entries: 2's delta encodings (steps, times, offsets and
sequence numbers; the store's segments use them too) hold the benchmark's points in ~3.1
bytes each instead of format 1's ~10.7, at the same CPU to write. Entries that older
releases wrote in format 1 read (and merge) as before: readers take either."""
ENUM_SERIES = 4096
ENUM_MIN_POINTS = 10_000
"""An entry's points are written through ENUMs (`_hot_points`) when there are at least this
many new ones and at most ENUM_SERIES hot series: the ENUMs cost ~0.5 ms a publish and save
~0.13 us a point (a publish of 100 points: 8.25 -> 8.75 ms, 10,000: 11.9 either way,
65,000: 28.3 -> 20.0)."""
STATE_BLOCK_SIZE = 65_536
"""DuckDB block size of a new partition store's state.duckdb (DuckDB's default: 256
KiB). Each table with rows and each primary-key index takes whole blocks, so a store
held ~2.5 MB before its first point, and its hot points' last blocks part-filled: the
benchmark's four stores of 250,000 points took 4.5-5.8 MB each, ~21 bytes a point; at 64
KiB ~9 (an empty store ~0.5 MB). Below 64 KiB DuckDB stops bit-packing integers (at 16
KiB the same points took more than at 256). A store keeps the block size it was made
with: a folder of an older release opens and grows as it is."""
STORE_THREADS = 1
"""DuckDB threads of a partition store (the worker's projector thread is the only writer)."""
STORE_ID = "store-id"
STORE_FOLDER = "store-folder"
"""The partition's file naming the folder its store is in (none: ``projections``)."""
FIRST_FOLDER = "projections"
WHY_REPLACED = "replaced-as"
"""In a store folder rebuilt beside: damaged or outdated, the name it is moved aside as."""

Entry = dict[str, Any]
"""{"name", "from", "to", "level", "files": {relation: path relative to the partition},
and in a merged entry "points": [[path of a points file, the offset it ends before]]}."""
Manifest = dict[str, Any]


def entry_points(entry: Entry) -> list[tuple[str, int]]:
    """The files of hot points `entry` stands for, each with the offset its points end
    before: those its merged entries held, then its own."""
    found = [(str(path), int(to)) for path, to in entry.get("points", ())]
    if HOT in entry["files"]:
        found.append((str(entry["files"][HOT]), int(entry["to"])))
    return found


def entry_files(entry: Entry) -> list[str]:
    """Every file an entry names, relative to its partition's folder."""
    return [*entry["files"].values(), *(path for path, _ in entry.get("points", ()))]


def partition_dir(data: Path, partition: int) -> Path:
    return Path(data) / "partitions" / f"p{partition}"


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def store_id(directory: Path) -> str:
    """The id of the store in `directory`, made when the store is."""
    path = directory / STORE_ID
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        made = uuid.uuid4().hex
        _atomic_write(path, made)
        return made


def key_columns(table: str) -> str:
    return ", ".join(f'"{c}"' for c in PRIMARY_KEYS[table])


class ExportsUpload(Protocol):
    """Where a partition's exports go besides its folder (an object store)."""

    def publish(self, root: Path, partition: int, manifest: Manifest) -> None:
        """Upload the files `manifest` names (under `root`) that are not there yet, then the
        manifest; returns at once (the upload runs on a thread of its own)."""
        ...

    def flush(self, partition: int, timeout: float = 30.0) -> bool:
        """Wait until the partition's latest manifest is uploaded."""
        ...


class ExportingStore(DuckDBProjectionStore):
    """The projection store of one partition, noting what each batch changed: the keys of
    upserted rows, whether appended rows or points were added, and where the hot points
    begin (compaction moves all of them into a segment)."""

    def __init__(self, directory: Path, partition: int, **kwargs: Any) -> None:
        self.partition = partition
        self.changed: dict[str, set[Key]] = {}
        self.appended: set[str] = set()
        self.new_points = 0  # applied since the last publish (some maybe straight to segments)
        self._segments: list[Path] | None = None
        self._compacting = False
        _create_state_file(Path(directory))
        super().__init__(directory, **kwargs)
        # A worker folds its partitions on one thread; DuckDB's pool of a thread per core
        # for each store (a worker holds several) cost ~10% more CPU for the same batches
        # (in-process, the benchmark's 1M points into 4 stores: 2.01 -> 1.82 CPU-s).
        self.conn.execute(f"SET threads = {STORE_THREADS}")
        first = self.conn.execute('SELECT min("offset") FROM metric_points_hot_data').fetchall()
        self.hot_below = (
            int(first[0][0]) if first[0][0] is not None else self.next_offsets().get(partition, 0)
        )

    def apply(self, writes: Writes) -> None:
        super().apply(writes)
        for table, rows in writes.upserts.items():
            if rows and table in PRIMARY_KEYS:
                self.changed.setdefault(table, set()).update(row_key(table, r) for r in rows)
        self.appended.update(t for t, rows in writes.inserts.items() if rows)
        if writes.num_points:
            self.appended.add(HOT)
            self.new_points += writes.num_points

    def published(self) -> None:
        """What changed has been exported: start noting anew."""
        self.changed, self.appended, self.new_points = {}, set(), 0

    def compact(self) -> None:
        self._compacting = True  # segments change meanwhile, maybe more than once
        try:
            super().compact()
        finally:
            self._compacting, self._segments = False, None
        self.hot_below = self.next_offsets().get(self.partition, 0)

    def segment_paths(self) -> list[Path]:
        """Asked by every publish; only compaction changes them, so outside one they are
        remembered (a query each time cost ~1 ms of every publish)."""
        if self._compacting:
            return super().segment_paths()
        if self._segments is None:
            self._segments = super().segment_paths()
        return list(self._segments)


class PartitionStore:
    def __init__(self, data: Path, partition: int, upload: ExportsUpload | None = None) -> None:
        self.partition = partition
        self.root = partition_dir(data, partition)
        self.root.mkdir(parents=True, exist_ok=True)
        self._retiring: dict[str, tuple[float | None, str]] = {}  # old store folders
        self.folder = self._open_folder()
        self.store = self._open_store()
        self.store_id = store_id(self.root / self.folder)
        self.exports = self.root / "export"
        self.exports.mkdir(parents=True, exist_ok=True)
        for folder in self.exports.glob(".*.tmp"):
            # an entry or a merge a stop cut short (`_prune` leaves folders being written
            # alone); with the store open here, nothing else writes this partition's
            shutil.rmtree(folder, ignore_errors=True)
        self.upload = upload
        self.chain: list[Entry] = []
        self._published_to = 0
        self._needs_base = self.next_offset() > 0  # a new store has nothing to miss
        self.withheld_until: int | None = None
        """While set, the manifest on disk is another store's, further on in the log and
        whole: it stays until this store reaches its offset (see the module docstring)."""
        previous = read_manifest(self.root / MANIFEST)
        if (
            previous is not None
            and previous.get("store_id") == self.store_id
            and int(previous.get("next_offset", -1)) == self.next_offset()
        ):  # a clean stop: the chain goes on where it ended
            self.chain = list(previous["chain"])
            self._published_to = self.next_offset()
            self._needs_base = False
        elif (
            previous is not None
            and previous.get("store_id") != self.store_id
            and int(previous.get("next_offset", 0)) > self.next_offset()
            and self._readable(previous)
        ):
            self.withheld_until = int(previous["next_offset"])
            _log.warning(
                "partition %d: readers keep the exports of store %s until this store has"
                " caught up to offset %d",
                partition,
                previous.get("store_id"),
                self.withheld_until,
            )
        self._note_old_folders(previous)
        self._published_at = 0.0
        self._due: float | None = None  # a throttled publish wanted to happen by then
        self._dirty = True
        self._merger: ThreadPoolExecutor | None = None
        self._merge_conn: duckdb.DuckDBPyConnection | None = None  # the merger thread's
        self._merging: tuple[list[str], Future[Entry]] | None = None
        self._dropped: dict[str, float] = {}  # entry folder -> when it left the chain
        self._lock = threading.Lock()  # publish and close
        self._closing = False  # the last publish schedules no merge (its pool is shut down)

    def _open_folder(self) -> str:
        try:
            return (self.root / STORE_FOLDER).read_text().strip() or FIRST_FOLDER
        except FileNotFoundError:
            return FIRST_FOLDER

    def _open_store(self) -> ExportingStore:
        """The partition's store; one that is damaged or of another projection format is
        rebuilt from the log (offset 0), as embedded mode does. While the published
        manifest names its files, it is rebuilt beside them (in a new folder) and they
        stay until the new store has caught up and replaced that manifest; otherwise it is
        moved aside at once."""
        folder = self.root / self.folder
        try:
            return ExportingStore(folder, self.partition, retire_after_s=GRACE_S)
        except ProjectionDamaged as exc:
            kind = "outdated" if isinstance(exc, ProjectionOutdated) else "damaged"
            previous = read_manifest(self.root / MANIFEST)
            named = previous is not None and self.folder in _folders(previous)
            if named and previous is not None and self._readable(previous):
                self._retiring[self.folder] = (None, kind)
                _atomic_write(folder / WHY_REPLACED, kind)  # for a worker started later
                self.folder = f"{FIRST_FOLDER}-{uuid.uuid4().hex[:12]}"
                _atomic_write(self.root / STORE_FOLDER, self.folder)
                fsync_dir(self.root)
                _log.error(
                    "partition %d: %s; rebuilding from the log into %s (the old exports are"
                    " read meanwhile)",
                    self.partition,
                    exc,
                    self.folder,
                )
                return ExportingStore(
                    self.root / self.folder, self.partition, retire_after_s=GRACE_S
                )
            moved = move_aside(folder, kind)
            _log.error(
                "partition %d: %s; moved to %s, rebuilding from the log", self.partition, exc, moved
            )
            return ExportingStore(folder, self.partition, retire_after_s=GRACE_S)

    def _readable(self, manifest: Manifest) -> bool:
        """Whether every file `manifest` names is there (a store lost with its segments
        leaves a manifest nobody can read: no reason to keep it)."""
        return all((self.root / path).is_file() for path in referenced_files(manifest))

    def _note_old_folders(self, manifest: Manifest | None) -> None:
        """Store folders other than this store's that `manifest` (the one readers have)
        does not name: moved aside GRACE_S from now (a worker may have stopped between a
        rebuilt store's first manifest and moving the old one aside)."""
        named = _folders(manifest) if manifest is not None else set()
        now = time.time()
        for path in self.root.iterdir():
            name = path.name
            old = name == FIRST_FOLDER or name.startswith(FIRST_FOLDER + "-")
            if old and "." not in name and name not in {self.folder, *named} and path.is_dir():
                since, kind = self._retiring.get(name, (None, ""))
                if not kind:
                    try:
                        kind = (path / WHY_REPLACED).read_text().strip() or "replaced"
                    except OSError:
                        kind = "replaced"
                self._retiring[name] = (since or now, kind)

    def next_offset(self) -> int:
        return self.store.next_offsets().get(self.partition, 0)

    def apply(self, batch: Sequence[Record]) -> None:
        """Fold a batch of this partition's records (redelivered ones are skipped)."""
        if batch:
            apply_or_park(self.store, batch)  # a record the store refuses is parked
            self._dirty = True

    def compact_if_due(self) -> None:
        """Housekeeping for the worker's timer: compact the hot points once enough."""
        before = self.store.hot_below
        self.store.maybe_compact()
        if self.store.hot_below != before:
            self._dirty = True

    # -- publishing ------------------------------------------------------------------------

    def publish(self, min_interval_s: float = 0.0) -> bool:
        """Add an entry with what changed and point the manifest at it; False when
        throttled or nothing changed. A throttled call is remembered: a later one with a
        longer interval (the worker's timer) still publishes when the earlier wanted to."""
        now = time.time()
        with self._lock:
            merged = self._take_merge()
            if not (self._dirty or merged):
                return False
            due = self._published_at + min_interval_s
            if self._due is not None:
                due = min(due, self._due)
            if now < due:
                self._due = due
                return False
            self._due = None
            end = self.next_offset()
            if self.withheld_until is not None:
                if end < self.withheld_until:
                    return False  # readers keep the old store's exports meanwhile
                self.withheld_until, self._needs_base = None, True
                self._note_old_folders(None)  # the manifest below names only this store
            store = self.store
            if self._needs_base:
                self.chain = [self._write_entry(0, end, base=True)]
                self._needs_base = False
            elif end > self._published_to or store.changed or store.appended:
                self.chain.append(self._write_entry(self._published_to, end))
            store.published()
            self._forget_compacted(store.hot_below)
            self._published_to = end
            manifest = self.manifest(now)
            _atomic_write(self.root / MANIFEST, json.dumps(manifest))
            if self.upload is not None:
                self.upload.publish(self.root, self.partition, manifest)
            self._published_at, self._dirty = now, False
            self._schedule_merge()
            self._prune(now)
            return True

    def _forget_compacted(self, hot_below: int) -> None:
        """Merged entries stop naming files of points now all in segments (their folders
        are then removed GRACE_S later, as entries merged away are)."""
        for entry in self.chain:
            held = entry.get("points")
            if held and any(to <= hot_below for _, to in held):
                entry["points"] = [pt for pt in held if pt[1] > hot_below]  # a new list

    def manifest(self, now: float) -> Manifest:
        segments = [p.name for p in self.store.segment_paths()]
        return {
            "version": EXPORT_VERSION,
            "partition": self.partition,
            "store_id": self.store_id,
            "next_offset": self._published_to,
            "next_offsets": {str(self.partition): self._published_to},
            "chain": self.chain,
            "folder": self.folder,
            "segments": [f"{self.folder}/segments/{name}" for name in segments],
            "tiles": [f"{self.folder}/tiles/{name}" for name in segments],
            "hot_below": self.store.hot_below,
            "published_at": now,
        }

    def _write_entry(self, start: int, end: int, base: bool = False) -> Entry:
        """The rows changed in [start, end) (everything, for a base) as an entry folder."""
        name = f"e{end:012d}-{time.time_ns()}"
        tmp = self.exports / f".{name}.tmp"
        tmp.mkdir()
        conn = self.store.conn
        files: dict[str, str] = {}
        store = self.store
        hot_from = max(start, store.hot_below)
        conn.execute("BEGIN TRANSACTION")  # one snapshot for every file
        try:
            for table in EXPORTED:
                path = tmp / f"{table}.parquet"
                if table in PRIMARY_KEYS:
                    if base:
                        rows = _copy(conn, f"SELECT * FROM {table}", path)
                    elif table in store.changed:
                        rows = self._copy_changed(conn, table, store.changed[table], path)
                    else:
                        continue
                elif table == HOT:
                    if not (base or HOT in store.appended):
                        continue
                    many = base or store.new_points >= ENUM_MIN_POINTS
                    rows = _copy(conn, _hot_points(conn, hot_from, many), path)
                else:
                    if not (base or table in store.appended):
                        continue
                    rows = _copy(conn, f'SELECT * FROM {table} WHERE "offset" >= {start}', path)
                if rows:
                    files[table] = f"export/{name}/{table}.parquet"
                else:
                    path.unlink()
        finally:
            conn.execute("COMMIT")
        for f in tmp.iterdir():
            _fsync(f)
        os.replace(tmp, self.exports / name)
        level = BASE_LEVEL if base else 0
        return {"name": name, "from": start, "to": end, "level": level, "files": files}

    @staticmethod
    def _copy_changed(
        conn: duckdb.DuckDBPyConnection, table: str, keys: set[Key], path: Path
    ) -> int:
        """The rows of `table` with these keys, the keys given as one list parameter per key
        column (registering an Arrow table of them, and dropping it, cost more than the
        copy: ~1.5 ms each time)."""
        cols = PRIMARY_KEYS[table]
        rows = sorted(tuple(k) if isinstance(k, tuple) else (k,) for k in keys)
        wanted = ", ".join(f'unnest(?::VARCHAR[]) AS "{c}"' for c in cols)
        using = ", ".join(f'"{c}"' for c in cols)
        query = f"SELECT t.* FROM {table} t SEMI JOIN (SELECT {wanted}) _changed USING ({using})"
        return _copy(conn, query, path, [[row[i] for row in rows] for i in range(len(cols))])

    # -- merging the chain in the background ------------------------------------------------

    def _schedule_merge(self) -> None:
        if self._merging is not None or self._closing:
            return
        run = _mergeable(self.chain)
        if run is None:
            return
        if self._merger is None:
            self._merger = ThreadPoolExecutor(1, thread_name_prefix=f"merge-p{self.partition}")
        entries = [dict(e) for e in run]
        future = self._merger.submit(self._merge, entries, self.store.hot_below)
        self._merging = ([e["name"] for e in entries], future)

    def _merge(self, entries: list[Entry], hot_below: int) -> Entry:
        """On the merger thread, with a DuckDB connection kept for every merge (making one
        cost ~25 ms of CPU, most of a merge of a few changed rows)."""
        if self._merge_conn is None:
            self._merge_conn = duckdb.connect()
            self._merge_conn.execute("SET threads = 1")  # a chore: leave the cores to folding
        return merge_entries(self.root, entries, hot_below, self._merge_conn)

    def _take_merge(self) -> bool:
        """Swap a finished merge into the chain (if its entries are still there)."""
        if self._merging is None or not self._merging[1].done():
            return False
        names, future = self._merging
        self._merging = None
        if future.cancelled():  # by close(): the entries stay in the chain, unmerged
            return False
        try:
            merged = future.result()
        except Exception:
            _log.exception("partition %d: merging export entries failed", self.partition)
            return False
        current = [e["name"] for e in self.chain]
        for i in range(len(current) - len(names) + 1):
            if current[i : i + len(names)] == names:
                self.chain[i : i + len(names)] = [merged]
                now = time.time()
                self._dropped.update(dict.fromkeys(names, now))
                return True
        self._dropped[merged["name"]] = time.time()  # a base replaced the chain meanwhile
        return False

    def _prune(self, now: float) -> None:
        """Remove entry folders that left the chain more than GRACE_S ago (and leftovers
        of a crash: folders in no chain, not being written)."""
        live = {e["name"] for e in self.chain}
        for entry in self.chain:  # a merged entry's points stay in the entries they came in
            live.update(path.split("/")[1] for path, _ in entry.get("points", ()))
        if self._merging is not None:
            live.update(self._merging[0])
        for folder in self.exports.iterdir():
            name = folder.name
            if name in live or name.startswith("."):
                continue
            since = self._dropped.setdefault(name, now)
            if now - since >= GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                self._dropped.pop(name, None)
        for name, (left, kind) in list(self._retiring.items()):
            if left is not None and now - left >= GRACE_S:
                del self._retiring[name]
                if (self.root / name).is_dir():
                    moved = move_aside(self.root / name, kind)
                    _log.info("partition %d: the replaced store is now %s", self.partition, moved)

    def close(self) -> None:
        self._closing = True
        if self._merger is not None:
            self._merger.shutdown(wait=True, cancel_futures=True)
        if self._merge_conn is not None:
            self._merge_conn.close()
        self._dirty = True
        self.publish()
        self.store.close()
        if self.upload is not None and not self.upload.flush(self.partition):
            _log.warning("partition %d: its last manifest is not uploaded yet", self.partition)


def _create_state_file(directory: Path) -> None:
    """A new store's empty state.duckdb, made with STATE_BLOCK_SIZE blocks (DuckDB keeps a
    file's block size in its header: the store opens it as any other)."""
    state = directory / STATE_FILE
    if state.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STATE_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    duckdb.connect(str(tmp), config={"default_block_size": str(STATE_BLOCK_SIZE)}).close()
    _fsync(tmp)
    os.replace(tmp, state)


def _copy(
    conn: duckdb.DuckDBPyConnection, query: str, path: Path, params: list[Any] | None = None
) -> int:
    """`query` (with `params`) as a Parquet file; returns its row count."""
    found = conn.execute(
        f"COPY ({query}) TO {quote(str(path))} (FORMAT parquet, COMPRESSION {COMPRESSION},"
        f" PARQUET_VERSION {ENTRY_FORMAT})",
        params,
    ).fetchall()
    return int(found[0][0]) if found else 0


def _hot_points(conn: duckdb.DuckDBPyConnection, hot_from: int, many: bool) -> str:
    """The query of the hot points at or after `hot_from`, as `metric_points_hot` has them.

    Why not that view: the Parquet writer hashed each point's three strings (iteration,
    key, group) into its dictionaries, half the CPU of the entry's points (~35 of ~75 ms
    for 375,000 points). Cast to ENUMs on the series table (one row a series), the points
    carry small integers and the writer takes each ENUM's values as the dictionary: ~45
    ms, and the file holds the same strings, encodings and bytes (readers see VARCHAR).
    The series table is emptied by each compaction, so the ENUMs stay small; past
    ENUM_SERIES it is the view again, and for fewer than `many` points (ENUM_MIN_POINTS)."""
    where = f'WHERE "offset" >= {hot_from}'
    if not many:
        return f"SELECT {POINT_COLUMNS} FROM {HOT} {where}"
    found = conn.execute(
        f'SELECT iteration_id, "key", "group" FROM metric_series_hot LIMIT {ENUM_SERIES + 1}'
    ).fetchall()  # (list(DISTINCT ...) took ~1.5 ms, these rows ~0.3)
    if not 0 < len(found) <= ENUM_SERIES:
        return f"SELECT {POINT_COLUMNS} FROM {HOT} {where}"
    columns = zip(*found, strict=True)
    ids, keys, groups = (", ".join(map(quote, sorted(set(values)))) for values in columns)
    series = (
        f"SELECT series, iteration_id::ENUM({ids}) AS iteration_id,"
        f' "key"::ENUM({keys}) AS "key", "group"::ENUM({groups}) AS "group"'
        " FROM metric_series_hot"
    )
    return (
        f"SELECT {POINT_COLUMNS} FROM metric_points_hot_data JOIN ({series}) s USING (series)"
        f" {where}"
    )


def _mergeable(chain: list[Entry]) -> list[Entry] | None:
    """The first FANOUT consecutive entries of one level below the base, if any."""
    run: list[Entry] = []
    for entry in chain:
        if run and entry["level"] == run[0]["level"] and entry["level"] < BASE_LEVEL:
            run.append(entry)
        else:
            run = [entry]
        if len(run) == FANOUT and run[0]["level"] < BASE_LEVEL:
            return run
    return None


def merge_entries(
    root: Path,
    entries: list[Entry],
    hot_below: int,
    conn: duckdb.DuckDBPyConnection | None = None,
) -> Entry:
    """One entry equal to `entries` applied in order: the last version of each upserted
    row, every appended row, and the names of their files of points not all in segments
    yet (never a copy of them). Runs on `conn` (an in-memory DuckDB), else on its own."""
    first, last = entries[0], entries[-1]
    name = f"e{last['to']:012d}-{time.time_ns()}"
    exports = root / "export"
    tmp = exports / f".{name}.tmp"
    tmp.mkdir()
    files: dict[str, str] = {}
    points = [[path, to] for e in entries for path, to in entry_points(e) if to > hot_below]
    own = conn is None
    if conn is None:
        conn = duckdb.connect()
        conn.execute("SET threads = 1")  # a background chore: leave the cores to folding
    try:
        for table in (*UPSERTED, *APPENDED):  # points are named, not copied (`points`)
            parts = [
                (i, root / e["files"][table]) for i, e in enumerate(entries) if table in e["files"]
            ]
            if not parts:
                continue
            listed = "[" + ", ".join(quote(str(p)) for _, p in parts) + "]"
            if table in PRIMARY_KEYS:
                union = " UNION ALL ".join(
                    f"SELECT *, {i} AS _entry FROM read_parquet({quote(str(p))})" for i, p in parts
                )
                query = (
                    f"SELECT * EXCLUDE (_entry) FROM ({union}) QUALIFY row_number() OVER"
                    f" (PARTITION BY {key_columns(table)} ORDER BY _entry DESC) = 1"
                )
            else:
                query = f"SELECT * FROM read_parquet({listed})"
            path = tmp / f"{table}.parquet"
            if _copy(conn, query, path):
                files[table] = f"export/{name}/{table}.parquet"
            else:
                path.unlink()
    finally:
        if own:
            conn.close()
    for f in tmp.iterdir():
        _fsync(f)
    os.replace(tmp, exports / name)
    level = int(first["level"]) + 1
    merged: Entry = {"name": name, "from": first["from"], "to": last["to"], "level": level}
    return {**merged, "files": files, "points": points}


def referenced_files(manifest: Manifest) -> list[str]:
    """The files a manifest names, relative to its partition's folder."""
    files = [f for entry in manifest["chain"] for f in entry_files(entry)]
    return files + list(manifest["segments"]) + list(manifest["tiles"])


def _folders(manifest: Manifest) -> set[str]:
    """The store folders a manifest names (older manifests: only ``projections``)."""
    found = {str(p).split("/", 1)[0] for p in [*manifest["segments"], *manifest["tiles"]]}
    return found | {str(manifest.get("folder", FIRST_FOLDER))}


def read_manifest(path: Path) -> Manifest | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none yet, or being replaced right now: the next look sees it
    if not isinstance(found, dict) or found.get("version") not in READ_VERSIONS:
        return None  # written by an older (or newer) release: the store publishes a base
    return found


def read_manifests(data: Path) -> list[Manifest]:
    found = []
    for path in sorted((Path(data) / "partitions").glob("p*/" + MANIFEST)):
        manifest = read_manifest(path)
        if manifest is not None:
            found.append(manifest)
    return found
