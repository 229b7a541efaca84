"""The projection store on real files: segments, compaction, crash safety."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

from deardiary.schemas import codec
from deardiary.schemas.envelope import wrap
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from tests.builders import metrics, sweep_start


def _fill(data: Path, batches: int, points: int) -> None:
    log = SqliteEventLog(str(data / "log.db"))
    envs = [wrap(e) for e in sweep_start()]
    for b in range(batches):
        envs.append(
            wrap(metrics("it-1", [("loss", float(b * points + i), -1) for i in range(points)]))
        )
    log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])
    log.close()


def _counts(data: Path) -> tuple[int, int, int, int]:
    with EmbeddedStore(data) as store:
        row = store.sql(
            "SELECT count(*) AS n, count(DISTINCT step) AS steps, min(step) AS lo, max(step) AS hi"
            " FROM metrics"
        ).to_pylist()[0]
    return row["n"], row["steps"], row["lo"], row["hi"]


def _catch_up_compacting_often(store: EmbeddedStore) -> None:
    """Fold one record a step, compacting every 100 points and merging small segments."""
    store.store.hot_points_limit = 100
    store.store.merge_below_rows = 1000
    store.store.max_small_segments = 4
    assert store.projector is not None
    store.projector.max_records = 1
    store.catch_up()


def test_compaction_keeps_segment_count_bounded(tmp_path: Path) -> None:
    _fill(tmp_path, batches=60, points=100)
    with EmbeddedStore(tmp_path) as store:
        _catch_up_compacting_often(store)
        registered = {p.name for p in store.store.segment_paths()}
        assert len(registered) <= 4 + 6  # merged small ones plus a few full-size segments
    # merged-away segments wait out RETIRE_AFTER_S (reads begun before a merge still scan
    # them); the store deletes them when it is next opened
    assert _counts(tmp_path) == (6000, 6000, 0, 5999)
    assert {p.name for p in (tmp_path / "projections" / "segments").iterdir()} == registered


def test_unregistered_segment_files_are_removed_on_open(tmp_path: Path) -> None:
    _fill(tmp_path, batches=2, points=10)
    stray = tmp_path / "projections" / "segments" / "seg-9999999999.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left by a crash between rename and registration")
    assert _counts(tmp_path) == (20, 20, 0, 19)
    assert not stray.exists()


def test_kill_9_of_the_projector_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    _fill(tmp_path, batches=300, points=50)
    script = Path(__file__).with_name("project_forever.py")
    for kill_after in (3, 17, 40, 90):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(kill_after):
            if proc.stdout.readline() != "batch\n":
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert _counts(tmp_path) == (15000, 15000, 0, 14999)
    with EmbeddedStore(tmp_path) as store:
        lm = store.sql("SELECT count, top_step FROM last_metrics").to_pylist()
    assert lm == [{"count": 15000, "top_step": 14999}]


def test_signed_zeros_survive_replacement_bit_exactly(tmp_path: Path) -> None:
    """DuckDB's upsert keeps a stored value equal to the new one (0.0 == -0.0); rows are
    replaced whole, so the last value logged is the one stored, sign included."""
    import math

    from deardiary.projections.fold import fold, lookups_for
    from deardiary.projections.store import DuckDBProjectionStore
    from tests.builders import records

    log = records(
        [
            *sweep_start(),
            metrics("it-1", [("x", -0.0, -1)]),
            metrics("it-1", [("x", 0.0, -1)]),
        ]
    )
    store = DuckDBProjectionStore(tmp_path)
    for record in log:
        store.apply(fold(store.load_prior(lookups_for([record])), [record]))
    (last,) = store.reader().execute("SELECT last FROM last_metrics").fetchall()[0]
    store.close()
    assert last == 0.0 and math.copysign(1.0, last) == 1.0


def test_a_store_with_the_first_hot_point_layout_opens_with_its_points(tmp_path: Path) -> None:
    """Stores written before hot points were numbered per series kept them, strings and
    all, in a table named metric_points_hot; opening one moves them over, losing none."""
    _fill(tmp_path, batches=3, points=10)
    with EmbeddedStore(tmp_path) as store:
        store.catch_up()
        before = store.sql("SELECT * FROM metrics ORDER BY step").to_pylist()
    db = duckdb.connect(str(tmp_path / "projections" / "state.duckdb"))
    db.execute("CREATE TABLE old_hot AS SELECT * FROM metric_points_hot")
    db.execute("DROP VIEW metric_points_hot")
    db.execute("DROP TABLE metric_points_hot_data")
    db.execute("DROP TABLE metric_series_hot")
    db.execute("ALTER TABLE old_hot RENAME TO metric_points_hot")
    db.execute("CREATE OR REPLACE VIEW metrics AS SELECT * FROM metric_points_hot")
    db.close()
    _fill(tmp_path, batches=1, points=5)  # and more points arrive after the upgrade
    with EmbeddedStore(tmp_path) as store:
        after = store.sql("SELECT * FROM metrics ORDER BY step").to_pylist()
        store.store.compact()
        compacted = store.sql("SELECT count(*) AS n FROM metrics").to_pylist()[0]["n"]
    assert after[:30] == before and len(after) == 35 and compacted == 35


def test_a_burst_is_compacted_when_the_projector_is_idle(tmp_path: Path) -> None:
    """Under load the hot table may hold up to twice the limit; idle, it is compacted."""
    _fill(tmp_path, batches=1, points=150)
    with EmbeddedStore(tmp_path) as store:
        store.store.hot_points_limit = 100
        assert store.projector is not None
        store.projector.step()
        store.projector.step()
        assert store.store.hot_points() == 150 and not store.store.segment_paths()
        stop, wake = threading.Event(), threading.Event()
        follower = threading.Thread(target=store.projector.run, args=(stop, wake, 0.01))
        follower.start()
        time.sleep(0.5)  # a few idle polls; the writer connection is the follower's meanwhile
        stop.set()
        follower.join()
        assert store.store.hot_points() == 0 and len(store.store.segment_paths()) == 1
    assert _counts(tmp_path) == (150, 150, 0, 149)


def test_a_big_batch_leaves_no_free_blocks_in_the_state_file(tmp_path: Path) -> None:
    """A catch-up folds batches of more than a row group's points (122,880): DuckDB would
    write them into the file as they apply, and once compaction moved the points into a
    segment their blocks stay in the file, free, forever."""
    _fill(tmp_path, batches=3, points=150_000)
    with EmbeddedStore(tmp_path) as store:
        store.catch_up()
        store.store.compact()
    state = tmp_path / "projections" / "state.duckdb"
    conn = duckdb.connect(str(state), read_only=True)
    try:
        free, total = conn.execute(
            "SELECT free_blocks, total_blocks FROM pragma_database_size()"
        ).fetchall()[0]
    finally:
        conn.close()
    assert free <= 2, (free, total)
    assert _counts(tmp_path)[0] == 450_000


def test_a_file_whose_free_end_a_checkpoint_cut_off_opens_as_it_is(tmp_path: Path) -> None:
    """The checkpoint after each compaction cuts the free blocks off the file's end while
    the header still counts them: the store opens as it is, not called truncated, moved
    aside and rebuilt (it was: a server restarted after millions of points replayed its
    whole log)."""
    _fill(tmp_path, batches=60, points=100)
    with EmbeddedStore(tmp_path) as store:
        _catch_up_compacting_often(store)
    state = tmp_path / "projections" / "state.duckdb"
    conn = duckdb.connect(str(state), read_only=True)
    sizes = "SELECT block_size, total_blocks FROM pragma_database_size()"
    block, counted = conn.execute(sizes).fetchall()[0]
    conn.close()
    assert state.stat().st_size < block * counted  # the case: counted blocks cut off
    assert _counts(tmp_path) == (6000, 6000, 0, 5999)
    assert not list(tmp_path.glob("projections.damaged-*"))
