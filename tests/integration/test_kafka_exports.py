"""Incremental partition exports, read by query services from a folder and from a real
S3-compatible server (moto), without a broker: what each publish writes (only what
changed), the chain merged in the background, tiles for downsampling, a store that
stopped uncleanly or was rebuilt, and two query services answering alike."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from deardiary.projections.fold import Record, fold, lookups_for
from deardiary.projections.integrity import STATE_FILE
from deardiary.projections.queries import metric_series
from deardiary.projections.store import POINT_COLUMNS, DuckDBProjectionStore
from deardiary.schemas.events import IterationStarted
from deardiary.services.kafka_mode import partitions
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.kafka_mode.object_store import S3Upload
from deardiary.services.kafka_mode.partitions import PartitionStore, partition_dir
from tests.builders import metrics, records, sweep_start
from tests.store_snapshot import snapshot


@pytest.fixture
def bucket_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    bucket = f"exports-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/dd?endpoint_url={s3_endpoint}"


def _iterations(n: int, first: int = 0) -> list[Any]:
    events: list[Any] = sweep_start(iteration=f"it-{first}")
    return events + [
        IterationStarted(
            iteration_id=f"it-{i}",
            experiment_id=events[1].experiment_id,
            project_id=events[0].project_id,
            name=f"it-{i}",
        )
        for i in range(first + 1, first + n)
    ]


def _count(view: ExportsView, sql: str) -> int:
    conn = view.reader()
    try:
        return int(conn.execute(sql).fetchall()[0][0])
    finally:
        conn.close()


def _rows(part: PartitionStore, table: str) -> int:
    """Rows of `table` in the newest entry of the partition's chain (0 if none)."""
    files = part.chain[-1]["files"]
    return pq.read_metadata(part.root / files[table]).num_rows if table in files else 0


def test_a_publish_writes_what_changed_not_the_history(tmp_path: Path) -> None:
    part = PartitionStore(tmp_path, 0)
    log = records(_iterations(500))
    part.apply(log)
    part.publish()
    assert _rows(part, "iterations") == 500  # the first entry holds them all
    more = records([metrics("it-7", [("loss", 0.5, 1), ("acc", 0.1, 1)])], start=len(log))
    part.apply(more)
    part.publish()
    assert _rows(part, "iterations") == 0  # not one of the 500 again
    assert _rows(part, "last_metrics") == 2 and _rows(part, "metric_points_hot") == 2
    assert _rows(part, "events") == 1
    assert part.chain[-1]["from"] == len(log) and part.chain[-1]["to"] == len(log) + 1
    part.close()


def test_the_chain_is_merged_in_the_background_and_reads_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partitions, "FANOUT", 2)
    view = ExportsView(tmp_path, follow=False)
    part = PartitionStore(tmp_path, 0)
    log = records(sweep_start(iteration="it"))
    part.apply(log)
    offset = len(log)
    for n in range(20):
        batch = records([metrics("it", [("loss", float(n), n)])], start=offset)
        offset += 1
        part.apply(batch)
        part.publish()
        if n % 7 == 0:
            view.refresh()  # a reader following along, partly behind
        deadline = time.monotonic() + 10
        while part._merging is not None and time.monotonic() < deadline:
            part._merging[1].result()
            part.publish()
    levels = [e["level"] for e in part.chain]
    assert max(levels) >= 3 and len(levels) <= max(levels) + 1, levels  # one of each, at most
    assert asyncio.run(view.reached({0: offset}, timeout=5))
    fresh = ExportsView(tmp_path, follow=False)  # a query service started now
    for reader in (view, fresh):
        assert _count(reader, "SELECT count(*) FROM metrics") == offset - len(log)
        assert _count(reader, "SELECT count(DISTINCT step) FROM metrics") == offset - len(log)
        assert _count(reader, "SELECT max(count) FROM last_metrics") == offset - len(log)
        assert _count(reader, "SELECT count(*) FROM events") == offset
    fresh.close()
    view.close()
    part.close()


def test_entries_of_older_workers_in_zstd_and_format_1_and_newer_ones_read_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries are written with lz4 (cheaper on the ingest path) in Parquet format 2 now
    (delta encodings: ~3x smaller); a chain older workers began with zstd, then lz4 entries
    in format 1 goes on, and readers and merges take all of them. Closing a store whose
    chain is due a merge closes it (its last publish scheduled a merge on the pool that
    close had shut down, and raised)."""
    monkeypatch.setattr(partitions, "FANOUT", 2)
    part = PartitionStore(tmp_path, 0)
    log = records(sweep_start(iteration="it"))
    offset = len(log)
    part.apply(log)
    written = []
    releases = (("zstd", "V1"), ("zstd", "V1"), ("lz4_raw", "V1"), ("lz4_raw", "V1"), None, None)
    for n, release in enumerate(releases):
        if release is None:
            monkeypatch.undo()  # this release's own settings
            monkeypatch.setattr(partitions, "FANOUT", 2)
        else:
            monkeypatch.setattr(partitions, "COMPRESSION", release[0])
            monkeypatch.setattr(partitions, "ENTRY_FORMAT", release[1])
        steps = [("loss", float(n * 100 + i), n * 100 + i) for i in range(100)]
        part.apply(records([metrics("it", steps)], start=offset))
        offset += 1
        part.publish()
        meta = pq.read_metadata(part.root / part.chain[-1]["files"]["metric_points_hot"])
        step = meta.schema.to_arrow_schema().get_field_index("step")
        delta = "DELTA_BINARY_PACKED" in meta.row_group(0).column(step).encodings
        written.append((meta.row_group(0).column(0).compression, meta.format_version, delta))
    old = [("ZSTD", "1.0", False)] * 2 + [("LZ4", "1.0", False)] * 2  # pyarrow's LZ4: LZ4_RAW
    assert written == [*old, ("LZ4", "2.6", True), ("LZ4", "2.6", True)], written
    deadline = time.monotonic() + 10
    while part._merging is not None and time.monotonic() < deadline:
        part._merging[1].result()
        part.publish()  # merges of format-1 entries, and of format 1 with 2
    assert max(e["level"] for e in part.chain) >= 2, part.chain
    view = ExportsView(tmp_path, follow=False)
    assert asyncio.run(view.reached({0: offset}, timeout=5))
    assert _count(view, "SELECT count(*) FROM metrics") == 600
    assert _count(view, "SELECT count(DISTINCT step) FROM metrics") == 600
    view.close()
    part.close()


def _block_size(state: Path) -> int:
    conn = duckdb.connect(str(state), read_only=True)
    try:
        return int(conn.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0])
    finally:
        conn.close()


def test_a_new_store_takes_small_blocks_and_an_older_release_s_store_keeps_its_own(
    tmp_path: Path,
) -> None:
    """A new partition store's state.duckdb has STATE_BLOCK_SIZE (64 KiB) blocks: its
    tables and their keys take whole blocks, at DuckDB's default 256 KiB ~2.5 MB before
    the first point. A store folder an older release made (DuckDB's default blocks) opens,
    folds, publishes and reads as before, and keeps its block size."""
    log = records(_iterations(20))
    points = [metrics(f"it-{i}", [("loss", float(s), s) for s in range(2_000)]) for i in range(20)]
    log += records(points, start=len(log))
    old = partition_dir(tmp_path / "old", 0) / "projections"
    DuckDBProjectionStore(old).close()  # as the older release's worker made it
    sizes = {}
    for name in ("old", "new"):
        part = PartitionStore(tmp_path / name, 0)
        part.apply(log[: len(log) // 2])
        part.publish()
        part.close()
        part = PartitionStore(tmp_path / name, 0)  # reopened: a clean stop goes on
        part.apply(log[len(log) // 2 :])
        part.publish()
        part.close()
        state = partition_dir(tmp_path / name, 0) / "projections" / STATE_FILE
        sizes[name] = (_block_size(state), state.stat().st_size)
        view = ExportsView(tmp_path / name, follow=False)
        assert _count(view, "SELECT count(*) FROM metrics") == 40_000
        assert _count(view, "SELECT count(*) FROM iterations") == 20
        view.close()
    assert sizes["old"][0] == 256 * 1024 and sizes["new"][0] == partitions.STATE_BLOCK_SIZE
    assert sizes["new"][1] * 3 < sizes["old"][1], sizes


def test_a_following_view_counts_compacted_points_once(tmp_path: Path) -> None:
    """The view reads a partition's hot points from its chain's files without those below
    the manifest's `hot_below` (compacted into segments since): every point is counted
    once, before and after a compaction."""
    view = ExportsView(tmp_path, follow=False)
    part = PartitionStore(tmp_path, 0)
    log = records(sweep_start(iteration="it"))
    part.apply(log)
    offset, step = len(log), 0

    def more(n: int) -> None:
        nonlocal offset, step
        for _ in range(n):
            part.apply(records([metrics("it", [("loss", float(step), step)])], start=offset))
            offset, step = offset + 1, step + 1
        part.publish()
        view.refresh()
        assert asyncio.run(view.reached({0: offset}, timeout=5))
        assert _count(view, "SELECT count(*) FROM metrics") == step
        assert _count(view, "SELECT count(DISTINCT step) FROM metrics") == step

    more(3)
    more(2)  # hot_below unchanged
    part.store.compact()  # every hot point into a segment: hot_below moves
    more(1)
    assert _count(view, "SELECT count(*) FROM metric_points_hot") == 1
    more(2)
    view.close()
    part.close()


def _merge_all(part: PartitionStore) -> None:
    deadline = time.monotonic() + 10
    while part._merging is not None and time.monotonic() < deadline:
        part._merging[1].result()
        part.publish()  # swaps the merged entry in; removes the entries it replaced


def _merging_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: int, size: int
) -> tuple[ExportsView, PartitionStore, int, int]:
    """A store publishing `batches` batches of `size` points, merging its chain (fan-out 2,
    no grace) after each, and a view that counts every point once after each: (view,
    store, next offset, points)."""
    monkeypatch.setattr(partitions, "FANOUT", 2)
    monkeypatch.setattr(partitions, "GRACE_S", 0.0)
    view = ExportsView(tmp_path, follow=False)
    part = PartitionStore(tmp_path, 0)
    log = records(sweep_start(iteration="it"))
    part.apply(log)
    offset, points = len(log), 0
    for n in range(batches):
        batch = [("loss", float(n), n * size + s) for s in range(size)]
        part.apply(records([metrics("it", batch)], start=offset))
        offset, points = offset + 1, points + len(batch)
        part.publish()
        _merge_all(part)
        view.refresh()
        assert _count(view, "SELECT count(*) FROM metrics") == points
    return view, part, offset, points


def test_the_view_reads_points_in_place_and_follows_a_merged_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query side copies no metric point into its own database (it was most of its CPU
    under ingest): it reads the chain's files in place, so once merges replace entries and
    the entries merged away are removed (here at once: no grace), the view follows the
    newest chain and still counts every point once."""
    view, part, _, points = _merging_chain(tmp_path, monkeypatch, batches=12, size=100)
    assert max(e["level"] for e in part.chain) >= 2  # entries were merged (and removed)
    assert _count(view, "SELECT count(DISTINCT step) FROM metrics") == points
    held = "SELECT coalesce(sum(estimated_size), 0) FROM duckdb_tables() WHERE schema_name = 'm'"
    assert _count(view, held) < 100  # events and last_metrics, not 1,200 points
    view.close()
    part.close()


def _single_store(tmp_path: Path, log: list[Record]) -> dict[str, list[tuple[object, ...]]]:
    single = DuckDBProjectionStore(tmp_path / "single")
    single.apply(fold(single.load_prior(lookups_for(log)), log))
    found = snapshot(single.reader())
    single.close()
    return found


def test_tiles_are_exported_and_downsampling_answers_as_embedded_mode(tmp_path: Path) -> None:
    events: list[Any] = sweep_start(iteration="it")
    events += [
        metrics("it", [("loss", ((i * 7919) % 1000) / 7.0, i) for i in range(j, j + 500)])
        for j in range(0, 20_000, 500)
    ]
    log = records(events)
    single = DuckDBProjectionStore(tmp_path / "single", hot_points_limit=5_000)
    single.apply(fold(single.load_prior(lookups_for(log[:23])), log[:23]))
    single.apply(fold(single.load_prior(lookups_for(log[23:])), log[23:]))
    single.compact()
    expected = metric_series.downsampled(single.reader(), "it", "loss", 200)
    history = metric_series.history(single.reader(), "it", "loss")
    single.close()

    part = PartitionStore(tmp_path / "data", 0)
    part.store.hot_points_limit = 5_000
    part.apply(log[:23])
    part.publish()
    part.apply(log[23:])
    part.compact_if_due()
    part.publish()
    view = ExportsView(tmp_path / "data", follow=False)
    conn = view.reader()
    assert _count(view, "SELECT count(*) FROM metric_tiles") > 0  # tiles, not raw points
    assert metric_series.downsampled(conn, "it", "loss", 200).equals(expected)
    assert metric_series.history(conn, "it", "loss").equals(history)
    conn.close()
    view.close()
    part.close()


def test_an_unclean_stop_publishes_a_base_the_readers_apply_over_what_they_have(
    tmp_path: Path,
) -> None:
    log = records([*_iterations(20), metrics("it-3", [("loss", 1.0, 0)])])
    view = ExportsView(tmp_path, follow=False)
    part = PartitionStore(tmp_path, 0)
    part.apply(log[:10])
    part.publish()
    view.refresh()
    part.apply(log[10:])  # applied, never published: then the process died
    part.store.close()
    again = PartitionStore(tmp_path, 0)
    again.publish()
    assert [e["level"] for e in again.chain] == [partitions.BASE_LEVEL]
    assert again.chain[0]["from"] == 0 and again.chain[0]["to"] == len(log)
    view.refresh()
    fresh = ExportsView(tmp_path, follow=False)
    for reader in (view, fresh):
        assert _count(reader, "SELECT count(*) FROM iterations") == 20
        assert _count(reader, "SELECT count(*) FROM events") == len(log)
        assert _count(reader, "SELECT count(*) FROM metrics") == 1
    fresh.close()
    view.close()
    again.close()


def test_a_rebuilt_store_replaces_its_partition_once_it_has_caught_up(tmp_path: Path) -> None:
    log = records(_iterations(10))
    part = PartitionStore(tmp_path, 0)
    part.apply(log)
    part.publish()
    part.close()
    view = ExportsView(tmp_path, follow=False)
    assert _count(view, "SELECT count(*) FROM iterations") == 10
    # the store is lost (another machine, a wiped disk) and rebuilt from the log
    import shutil

    shutil.rmtree(partition_dir(tmp_path, 0) / "projections")
    rebuilt = PartitionStore(tmp_path, 0)
    rebuilt.apply(log[:4])
    rebuilt.publish()
    view.refresh()
    assert _count(view, "SELECT count(*) FROM iterations") == 10  # not going backwards
    rebuilt.apply(log[4:])
    rebuilt.publish()
    view.refresh()
    assert _count(view, "SELECT count(*) FROM iterations") == 10
    assert _count(view, "SELECT count(*) FROM events") == len(log)  # each once: the old went
    view.close()
    rebuilt.close()


def test_query_services_read_the_exports_from_s3(tmp_path: Path, bucket_url: str) -> None:
    """Workers and query services share no folder: the exports travel through the bucket,
    and two query services (each with its own cache) answer alike."""
    upload = S3Upload(bucket_url)
    worker_data = tmp_path / "worker"
    stores = {p: PartitionStore(worker_data, p, upload) for p in (0, 1)}
    stores[0].apply(records(_iterations(30)))
    stores[1].store.hot_points_limit = 100
    log1 = records(sweep_start(iteration="other", project="p2"), partition=1)
    log1 += records(
        [metrics("other", [("loss", float(i), i) for i in range(300)])],
        start=len(log1),
        partition=1,
    )
    stores[1].apply(log1)
    stores[1].compact_if_due()  # a segment and its tiles to upload too
    for store in stores.values():
        store.publish()
        assert upload.flush(store.partition)
    assert upload.last_error == ""
    views = [ExportsView(tmp_path / f"q{n}", exports=bucket_url, follow=False) for n in (0, 1)]
    for view in views:
        assert asyncio.run(view.reached({0: 23, 1: len(log1)}, timeout=10)), view.last_error
        assert _count(view, "SELECT count(*) FROM iterations") == 31
        assert _count(view, "SELECT count(*) FROM metrics") == 300
        assert _count(view, "SELECT count(*) FROM metric_tiles") > 0
    assert not any((tmp_path / f"q{n}").exists() for n in (0, 1))  # nothing local was read
    more = records([metrics("other", [("acc", 1.0, 0)])], start=len(log1), partition=1)
    stores[1].apply(more)
    stores[1].publish()
    assert upload.flush(1)
    for view in views:
        assert asyncio.run(view.reached({1: len(log1) + 1}, timeout=10))
        assert _count(view, "SELECT count(*) FROM metrics") == 301
        view.close()
    for store in stores.values():
        store.close()
    upload.close()


def _outdate(folder: Path) -> None:
    """Stamp a store with an old projection format: its next opening rebuilds it."""
    conn = duckdb.connect(str(folder / STATE_FILE))
    try:
        conn.execute("UPDATE projection_format SET version = 1")
    finally:
        conn.close()


def test_the_old_exports_stay_readable_while_an_outdated_store_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store rebuilt from the log (here: of an older projection format) catches up
    slowly -- one record a publish, and a worker restart halfway -- and the query side
    reads the old exports whole all through it: segments, tiles and the chain's hot
    points, from a view that was following and from one started meanwhile. The entries
    and segments of the old store are removed or moved aside only once no manifest names
    them (GRACE_S 0 here: a catch-up longer than any grace). The old code moved the old
    segments aside at once, and removed the old entries GRACE_S after the new store's
    first publish: queries failed until the new store had caught up."""
    monkeypatch.setattr(partitions, "GRACE_S", 0.0)
    events: list[Any] = sweep_start(iteration="it")
    events += [
        metrics("it", [("loss", s / 7.0, s) for s in range(j, j + 100)])
        for j in range(0, 3000, 100)
    ]
    log = records(events)
    part = PartitionStore(tmp_path, 0)
    part.store.hot_points_limit = 1_000
    part.apply(log[:20])
    part.compact_if_due()  # 1,700 points into a segment
    part.apply(log[20:])
    part.publish()
    old_id, old_manifest = part.store_id, partitions.read_manifest(part.root / partitions.MANIFEST)
    part.close()
    assert old_manifest is not None and old_manifest["segments"] and old_manifest["hot_below"] > 0
    _outdate(partition_dir(tmp_path, 0) / "projections")
    following = ExportsView(tmp_path, follow=False)

    def reads_everything(view: ExportsView, points: int = 3000) -> None:
        assert view.last_error == ""
        assert _count(view, "SELECT count(*) FROM metrics") == points
        assert _count(view, "SELECT count(DISTINCT step) FROM metrics") == points
        assert _count(view, "SELECT count(*) FROM metric_tiles") > 0
        conn = view.reader()
        try:
            assert len(metric_series.history(conn, "it", "loss")) == points
        finally:
            conn.close()

    reads_everything(following)
    rebuilt = PartitionStore(tmp_path, 0)
    rebuilt.store.hot_points_limit = 1_000
    assert rebuilt.store_id != old_id and rebuilt.withheld_until == len(log)
    for n in range(len(log)):
        if n == len(log) // 2:  # the worker stops and starts again meanwhile
            rebuilt.close()
            rebuilt = PartitionStore(tmp_path, 0)
            rebuilt.store.hot_points_limit = 1_000
            assert rebuilt.withheld_until == len(log) and rebuilt.next_offset() == n
        rebuilt.apply(log[n : n + 1])
        rebuilt.compact_if_due()
        rebuilt.publish()
        following.refresh()
        reads_everything(following)
        assert following.parts[0].store_id == (rebuilt.store_id if n == len(log) - 1 else old_id)
        if n % 8 == 0:
            started = ExportsView(tmp_path, follow=False)
            reads_everything(started)
            started.close()
    # the next publish removes the old entries and moves the old store aside
    rebuilt.apply(records([metrics("it", [("loss", 0.5, 3000)])], start=len(log)))
    rebuilt.publish()
    following.refresh()
    reads_everything(following, 3001)
    root = partition_dir(tmp_path, 0)
    assert not (root / "projections").exists() and list(root.glob("projections.outdated-*"))
    assert not any(
        root / "export" / e["name"] in rebuilt.exports.iterdir() for e in old_manifest["chain"]
    )
    following.close()
    rebuilt.close()
    again = PartitionStore(tmp_path, 0)  # a clean reopen finds the rebuilt store
    assert again.store_id == rebuilt.store_id and again.withheld_until is None
    again.close()


def test_closing_with_a_merge_queued_logs_no_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A merge still queued when the store closes is cancelled: its entries stay in the
    chain, unmerged, which is no failure (it was logged as one, with a traceback)."""
    monkeypatch.setattr(partitions, "FANOUT", 2)
    part = PartitionStore(tmp_path, 0)
    part._merger = ThreadPoolExecutor(1)
    release = threading.Event()
    part._merger.submit(release.wait)  # the merge below waits behind this
    log = records(_iterations(4))
    for n in range(len(log)):
        part.apply(log[n : n + 1])
        part.publish()
    assert part._merging is not None
    queued = part._merging[1]
    closing = threading.Thread(target=part.close)
    closing.start()
    deadline = time.monotonic() + 10
    while not queued.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    closing.join(timeout=30)
    assert queued.cancelled() and not closing.is_alive()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    view = ExportsView(tmp_path, follow=False)  # the unmerged chain reads whole
    assert _count(view, "SELECT count(*) FROM iterations") == 4
    view.close()


def test_a_backlog_batch_leaves_no_free_blocks_in_the_store_file(tmp_path: Path) -> None:
    """A batch of more than a row group's points (a worker reading a backlog) between
    small ones: DuckDB would write it into the file while it applies, and the checkpoint
    that rewrites its part-filled row group leaves its blocks free inside the file. The
    exporting store keeps such batches in memory and the WAL, compressed once."""
    log = records(sweep_start(iteration="it"))
    batches = [log]
    for n, size in enumerate((50, 130_000, 50)):
        steps = [("loss", float(s % 7), n * 1_000_000 + s) for s in range(size)]
        batches.append(records([metrics("it", steps)], start=len(log) + n))
    part = PartitionStore(tmp_path, 0)
    for batch in batches:
        part.apply(batch)
        part.publish()
    part.close()
    state = partition_dir(tmp_path, 0) / "projections" / STATE_FILE
    conn = duckdb.connect(str(state), read_only=True)
    try:
        free, points = conn.execute(
            "SELECT free_blocks, (SELECT count(*) FROM metric_points_hot_data)"
            " FROM pragma_database_size()"
        ).fetchall()[0]
    finally:
        conn.close()
    assert (free, points) == (0, 130_100)


def test_an_entry_a_stop_cut_short_is_removed_when_the_store_opens(tmp_path: Path) -> None:
    """An entry or a merge is written in `export/.<name>.tmp` and renamed; one a crash
    left half-written is no part of any chain and was kept forever (pruning skips folders
    being written). The next owner, holding the store, removes it."""
    part = PartitionStore(tmp_path, 0)
    part.apply(records(sweep_start(iteration="it")))
    part.publish()
    part.close()
    exports = partition_dir(tmp_path, 0) / "export"
    cut = exports / ".e000000000099-1.tmp"
    cut.mkdir()
    (cut / "metric_points_hot.parquet").write_bytes(b"half")
    entries = sorted(p.name for p in exports.iterdir() if p != cut)
    part = PartitionStore(tmp_path, 0)
    assert sorted(p.name for p in exports.iterdir()) == entries  # the chain's stay
    part.close()


def test_a_merge_names_the_points_files_and_copies_none_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merging the chain rewrote every hot point at each level (about as much CPU as
    writing it the first time); a merged entry now names the files of points its entries
    held, which stay in their entries' folders (kept, though those entries left the chain)
    until compaction moves their points into segments; then the manifest stops naming them
    and their folders go. Readers count every point once throughout."""
    view, part, offset, points = _merging_chain(tmp_path, monkeypatch, batches=9, size=10)
    merged = [e for e in part.chain if e["level"] >= 1]
    assert merged and max(e["level"] for e in merged) >= 2, part.chain
    for entry in merged:
        assert "metric_points_hot" not in entry["files"]
        assert not (part.exports / entry["name"] / "metric_points_hot.parquet").exists()
        assert entry["points"] and all((part.root / f).is_file() for f, _ in entry["points"])
    named = [f for e in part.chain for f, _ in partitions.entry_points(e)]
    assert len(named) == len(set(named)) == 9  # every batch's own file, once
    fresh = ExportsView(tmp_path, follow=False)
    assert _count(fresh, "SELECT count(*) FROM metrics") == points
    assert _count(fresh, "SELECT count(DISTINCT step) FROM metrics") == points
    fresh.close()
    part.store.compact()  # every point into a segment
    part.apply(records([metrics("it", [("loss", 1.0, 1000)])], start=offset))
    offset, points = offset + 1, points + 1
    part.publish()
    _merge_all(part)
    below = part.store.hot_below
    assert below == offset - 1  # the last point is the only hot one
    assert [to for e in part.chain for _, to in e.get("points", ())] == [offset], part.chain
    part.apply(records([metrics("it", [("loss", 2.0, 1001)])], start=offset))
    offset, points = offset + 1, points + 1
    part.publish()  # removes the folders nothing names any more (no grace here)
    _merge_all(part)
    named_folders = {f.split("/")[1] for e in part.chain for f, _ in partitions.entry_points(e)}
    live = {e["name"] for e in part.chain} | named_folders
    left = {p.name for p in part.exports.iterdir() if not p.name.startswith(".")}
    assert left == live, (left, part.chain)
    assert len(left) <= 4  # not the eleven entries' folders
    view.refresh()
    assert _count(view, "SELECT count(*) FROM metrics") == points
    view.close()
    part.close()


def test_a_chain_of_the_previous_export_version_reads_and_goes_on(tmp_path: Path) -> None:
    """Version 2 manifests (an older release's worker: no merged entry names points) are
    read by the view, and a store reopened on one goes on with its chain (no base)."""
    part = PartitionStore(tmp_path, 0)
    log = records(sweep_start(iteration="it"))
    part.apply(log)
    offset = len(log)
    for n in range(3):
        part.apply(records([metrics("it", [("loss", float(n), n)])], start=offset))
        offset += 1
        part.publish()
    part.close()
    manifest_path = part.root / partitions.MANIFEST
    old = {**json.loads(manifest_path.read_text()), "version": 2}
    manifest_path.write_text(json.dumps(old))
    view = ExportsView(tmp_path, follow=False)
    assert _count(view, "SELECT count(*) FROM metrics") == 3
    again = PartitionStore(tmp_path, 0)
    assert again.chain == old["chain"]  # a clean stop: no base entry
    again.apply(records([metrics("it", [("loss", 9.0, 9)])], start=offset))
    again.publish()
    assert json.loads(manifest_path.read_text())["version"] == partitions.EXPORT_VERSION
    assert [e["level"] for e in again.chain] == [0, 0, 0, 0]
    view.refresh()
    assert _count(view, "SELECT count(*) FROM metrics") == 4
    view.close()
    again.close()


def test_a_partition_store_runs_duckdb_on_one_thread(tmp_path: Path) -> None:
    """A worker folds its partitions on one projector thread; a DuckDB pool per store (a
    worker holds several) cost ~10% more CPU for the same batches."""
    part = PartitionStore(tmp_path, 0)
    threads = part.store.conn.execute("SELECT current_setting('threads')").fetchall()
    assert threads == [(partitions.STORE_THREADS,)] == [(1,)]
    part.close()


@pytest.mark.parametrize(
    ("min_points", "enum_series"),
    [(0, partitions.ENUM_SERIES), (0, 2), (10, partitions.ENUM_SERIES)],
)
def test_an_entry_s_points_are_the_store_s_hot_points_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_points: int, enum_series: int
) -> None:
    """Whether written through ENUMs of the series' strings or through the view (past
    ENUM_SERIES, or under ENUM_MIN_POINTS new points: each entry here has 9), an entry
    holds the hot points the store has at or after its offset: strings with quotes,
    accents and the empty group, values bit for bit (a guard: the view's rows are the
    reference)."""
    monkeypatch.setattr(partitions, "ENUM_SERIES", enum_series)
    monkeypatch.setattr(partitions, "ENUM_MIN_POINTS", min_points)
    queries: list[str] = []
    hot_points = partitions._hot_points

    def noting(*args: Any) -> str:
        queries.append(hot_points(*args))
        return queries[-1]

    monkeypatch.setattr(partitions, "_hot_points", noting)
    part = PartitionStore(tmp_path, 0)
    log = records(_iterations(3))
    keys = [("ünï/é", "vål"), ("loss", ""), ("a:b c", "train's")]
    for step in range(3):
        batch = [
            metrics(f"it-{i}", [(key, -0.0 if step else 1.5e-310, step)], group=group)
            for i in range(3)
            for key, group in keys
        ]
        log += records(batch, start=len(log))
        part.apply(log[-len(batch) :] if step else log)
        part.publish()
        entry = part.chain[-1]
        read = duckdb.connect().execute(
            f"SELECT * FROM read_parquet('{part.root / entry['files']['metric_points_hot']}')"
        )
        want = part.store.conn.execute(
            f'SELECT {POINT_COLUMNS} FROM metric_points_hot WHERE "offset" >= ?', [entry["from"]]
        )
        assert [d[:2] for d in read.description] == [d[:2] for d in want.description]
        got, expected = read.fetchall(), want.fetchall()
        assert len(got) == 9 and sorted(map(repr, got)) == sorted(map(repr, expected))
    part.close()
    enums = min_points == 0 and enum_series >= 9  # 9 series
    assert len(queries) == 3 and all(("ENUM(" in q) == enums for q in queries)
