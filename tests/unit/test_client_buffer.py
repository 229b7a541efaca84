"""The event buffer: logging order, columns, envelope limits, thread safety, bounded memory."""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.buffer import EventBuffer
from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import AUTO_STEP, MetricsLogged, ParamsLogged
from deardiary.spool import Spool

Point = tuple[str, str, int, float]  # iteration, key, step, value


def points_of(envelopes: list[Envelope]) -> list[Point]:
    out: list[Point] = []
    for env in envelopes:
        body = env.body
        if isinstance(body, MetricsLogged):
            index = array("H", body.key_index)
            steps = array("q", body.steps)
            values = array("d", body.values)
            assert len(index) == len(steps) == len(values) == len(body.times) // 8
            out += [
                (body.iteration_id, body.keys[k], s, v)
                for k, s, v in zip(index, steps, values, strict=True)
            ]
    return out


def spooled(spool: Spool) -> list[Envelope]:
    return [decode(r.payload) for name in spool.pending() for r in spool.read(name)]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def test_events_close_metric_batches_so_order_is_kept(spool: Spool) -> None:
    buf = EventBuffer(spool)
    buf.log_metric("a", "loss", 1.0, step=0)
    buf.log_metric("a", "acc", 0.5, step=0)
    buf.log_metric("b", "loss", 9.0)
    buf.emit(ParamsLogged(iteration_id="a", params={"lr": "0.1"}))
    buf.log_metric("a", "loss", 2.0, step=1)
    buf.emit(ParamsLogged(iteration_id="b", params={"lr": "0.2"}))

    envs = buf.drain()
    kinds = [(type(e.body).__name__, e.key) for e in envs]
    assert kinds == [
        ("MetricsLogged", "a"),
        ("MetricsLogged", "b"),
        ("ParamsLogged", "a"),
        ("MetricsLogged", "a"),
        ("ParamsLogged", "b"),
    ]
    assert points_of(envs) == [
        ("a", "loss", 0, 1.0),
        ("a", "acc", 0, 0.5),
        ("b", "loss", AUTO_STEP, 9.0),
        ("a", "loss", 1, 2.0),
    ]
    assert len({e.event_id for e in envs}) == len(envs)
    assert buf.drain() == [] and buf.pending_points == 0


def test_columns_keep_special_values_groups_and_client_times(spool: Spool) -> None:
    buf = EventBuffer(spool, actor="alice")
    for value in (math.nan, math.inf, -math.inf, 0.0, -1.5):
        buf.log_metric("it", "x", value)
    buf.log_metric("it", "x", 3.0, step=7, group="validation")
    envs = buf.drain()
    assert [e.actor for e in envs] == ["alice", "alice"]
    train, val = (e.body for e in envs)
    assert isinstance(train, MetricsLogged) and isinstance(val, MetricsLogged)
    assert (train.group, val.group) == ("", "validation")
    values = array("d", train.values)
    assert math.isnan(values[0]) and list(values[1:]) == [math.inf, -math.inf, 0.0, -1.5]
    assert list(array("q", train.steps)) == [AUTO_STEP] * 5
    times = list(array("q", train.times))
    assert times == sorted(times) and envs[0].client_time == times[0] > 0


def test_envelopes_are_split_at_the_point_limit(spool: Spool) -> None:
    buf = EventBuffer(spool, max_points_per_envelope=1000)
    for i in range(2500):
        buf.log_metric("it", f"k{i % 3}", float(i), step=i)
    envs = buf.drain()
    sizes = [e.body.num_points for e in envs if isinstance(e.body, MetricsLogged)]
    assert sizes == [1000, 1000, 500]
    assert [p[3] for p in points_of(envs)] == [float(i) for i in range(2500)]


def test_more_keys_than_uint16_opens_a_new_batch(spool: Spool) -> None:
    buf = EventBuffer(spool, max_points_per_envelope=100_000, max_points=200_000)
    n = (1 << 16) + 3
    for i in range(n):
        buf.log_metric("it", f"key{i}", float(i), step=0)
    envs = buf.drain()
    assert [len(e.body.keys) for e in envs if isinstance(e.body, MetricsLogged)] == [1 << 16, 3]
    assert points_of(envs) == [("it", f"key{i}", 0, float(i)) for i in range(n)]


def test_a_logger_follows_its_batch_past_the_key_limit(spool: Spool) -> None:
    """A bound logger remembers its open batch; one closed for want of key slots must
    take no more points, whichever logger closed it (they would land before the next
    batch's)."""
    buf = EventBuffer(spool, max_points_per_envelope=100_000, max_points=200_000)
    log, other = buf.metric_logger("it"), buf.metric_logger("it")
    log("key0", 0.0, 0)
    other("new", -1.0, 0)  # `other` now remembers the first batch
    n = (1 << 16) - 1
    for i in range(1, n + 1):  # the last key opens the second batch
        log(f"key{i}", float(i), 0)
    other("key0", 1.0, 1)  # known to the first batch only
    other("new", 2.0, 1)
    envs = buf.drain()
    assert [len(e.body.keys) for e in envs if isinstance(e.body, MetricsLogged)] == [1 << 16, 3]
    assert points_of(envs)[-3:] == [
        ("it", f"key{n}", 0, float(n)), ("it", "key0", 1, 1.0), ("it", "new", 1, 2.0)
    ]  # fmt: skip


def test_bad_calls_are_dropped_and_reported_later_never_raised(spool: Spool) -> None:
    buf = EventBuffer(spool)
    buf.log_metric("it", "ok", 1.0, step=0)
    buf.log_metric("it", "loss", "high", step=1)  # type: ignore[arg-type]
    buf.log_metric("it", "loss", 1.0, step=-3)
    buf.log_metric("it", "loss", 1.0, step=1.5)  # type: ignore[arg-type]
    buf.log_metric("it", "loss", 1.0, step=1 << 70)
    buf.log_metric("it", "", 1.0)
    buf.log_metric("fresh", 7, 1.0)  # type: ignore[arg-type]
    buf.emit(ParamsLogged(iteration_id="it", params={"obj": object()}))  # type: ignore[dict-item]
    buf.log_metric("it", "ok", 2.0, step=1)
    assert buf.rejected == 7
    error = buf.take_error()
    assert isinstance(error, InvalidArgument) and "high" in error.message
    assert buf.take_error() is None
    assert points_of(buf.drain()) == [("it", "ok", 0, 1.0), ("it", "ok", 1, 2.0)]


def test_concurrent_loggers_lose_and_reorder_nothing(spool: Spool) -> None:
    buf = EventBuffer(spool, max_points=10_000_000, max_points_per_envelope=3_000)
    threads, per_thread = 8, 10_000
    drained: list[Envelope] = []
    done = threading.Event()

    def log(t: int) -> None:
        for i in range(per_thread):
            buf.log_metric(f"own{t}", "x", float(i), step=i)
            buf.log_metric("shared", f"t{t}", float(i))
            if i % 5000 == 0:
                buf.emit(ParamsLogged(iteration_id=f"own{t}", params={f"p{i}": str(i)}))

    def drain() -> None:
        while not done.is_set():
            drained.extend(buf.drain())
        drained.extend(buf.drain())

    drainer = threading.Thread(target=drain)
    drainer.start()
    workers = [threading.Thread(target=log, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    drainer.join()

    points = points_of(drained)
    assert len(points) == 2 * threads * per_thread
    for t in range(threads):
        own = [(s, v) for it, _, s, v in points if it == f"own{t}"]
        assert own == [(i, float(i)) for i in range(per_thread)]
        shared = [v for it, k, _, v in points if it == "shared" and k == f"t{t}"]
        assert shared == [float(i) for i in range(per_thread)]
        params = [e.body for e in drained if isinstance(e.body, ParamsLogged)]
        assert sum(1 for p in params if p.iteration_id == f"own{t}") == per_thread // 5000
    assert len({e.event_id for e in drained}) == len(drained)


def test_bound_loggers_shared_by_threads_lose_and_reorder_nothing(spool: Spool) -> None:
    """The inlined path under contention: bound loggers (one shared by every thread, one
    per thread) stage into remembered batches while events close them, a drainer takes
    them and small limits make batches settle, wake and spill all the time. Nothing here
    leans on the GIL: every step is under the buffer's lock (a thread switch every
    microsecond shakes the interleavings)."""
    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    buf = EventBuffer(spool, max_points=20_000, wake_points=700, max_points_per_envelope=900)
    buf.on_pressure = lambda: None
    threads, per_thread = 6, 6_000
    shared, shared_val = buf.metric_logger("shared"), buf.metric_logger("shared")
    drained: list[Envelope] = []
    done = threading.Event()

    def log(t: int) -> None:
        own = buf.metric_logger(f"own{t}")
        for i in range(per_thread):
            own("x", float(i), i)
            shared(f"t{t}", float(i), i)
            shared_val(f"t{t}", float(i), i, "val")
            if i % 1000 == 999:
                buf.emit(ParamsLogged(iteration_id=f"own{t}", params={f"p{i}": str(i)}))

    def drain() -> None:
        while not done.is_set():
            drained.extend(buf.drain())
        drained.extend(buf.drain())

    try:
        drainer = threading.Thread(target=drain)
        drainer.start()
        workers = [threading.Thread(target=log, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        done.set()
        drainer.join()
    finally:
        sys.setswitchinterval(interval)
    assert buf.pending_points == 0 and buf._granted == 0 and buf._points == 0

    def series(envelopes: list[Envelope]) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
        got: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for env in envelopes:
            if isinstance(env.body, MetricsLogged):
                assert env.body.num_points <= 900
                group = env.body.group
                for it, key, step, value in points_of([env]):
                    got.setdefault((it, group, key), []).append((step, value))
        return got

    # A spill (when the drainer falls behind, as on a loaded machine) puts newer points in
    # the spool than some already drained: each way out keeps logging order, and together
    # they hold every point once.
    took, spilled = series(drained), series(spooled(spool))
    expected = [(i, float(i)) for i in range(per_thread)]
    for t in range(threads):
        for key in ((f"own{t}", "", "x"), ("shared", "", f"t{t}"), ("shared", "val", f"t{t}")):
            first, second = took.get(key, []), spilled.get(key, [])
            assert first == sorted(first) and second == sorted(second), key
            assert sorted(first + second) == expected, key


def test_overflow_spills_to_the_spool_and_memory_stays_bounded(spool: Spool) -> None:
    buf = EventBuffer(spool, max_points=1_000, max_points_per_envelope=400)
    seen_max = 0
    for i in range(10_500):
        buf.log_metric("it", "x", float(i), step=i)
        seen_max = max(seen_max, buf.pending_points)
        if i == 5_000:
            buf.emit(ParamsLogged(iteration_id="it", params={"half": "yes"}))
    assert seen_max <= 1_000
    assert len(spool.pending()) >= 10
    everything = spooled(spool) + buf.drain()
    assert points_of(everything) == [("it", "x", i, float(i)) for i in range(10_500)]
    param_at = next(n for n, e in enumerate(everything) if isinstance(e.body, ParamsLogged))
    assert points_of(everything[:param_at])[-1] == ("it", "x", 5_000, 5_000.0)


def test_event_bytes_are_bounded_too(spool: Spool) -> None:
    buf = EventBuffer(spool, max_bytes=10_000)
    for i in range(100):
        buf.emit(ParamsLogged(iteration_id="it", params={"k": "v" * 500, "i": str(i)}))
        assert buf.pending_bytes <= 10_000
    assert len(spooled(spool)) + len(buf.drain()) == 100


def test_pressure_wakes_the_shipper_once_per_drain(spool: Spool) -> None:
    buf = EventBuffer(spool, wake_points=100)
    calls: list[int] = []
    buf.on_pressure = lambda: calls.append(buf.pending_points)
    for i in range(350):
        buf.log_metric("it", "x", float(i))
    assert calls == [100]
    buf.drain()
    for i in range(100):
        buf.log_metric("it", "x", float(i))
    assert calls == [100, 100]


def test_take_reserves_order_behind_the_spool(spool: Spool) -> None:
    buf = EventBuffer(spool)
    buf.log_metric("it", "x", 1.0)
    first = buf.take()
    assert not first.behind_spool and len(first.records) == 1
    buf.log_metric("it", "x", 2.0)
    assert buf.spill() == 1
    second = buf.take()
    assert second.behind_spool and second.records == [] and second.seq > first.seq


def test_taken_and_spilled_records_are_encoded_bytes_of_every_point(spool: Spool) -> None:
    """`take` and `spill` encode the metric columns straight from the batch's arrays (no
    copy): the records are plain bytes that decode to every point, and the buffer logs
    on into new arrays afterwards."""
    buf = EventBuffer(spool)
    logs = buf.metrics_logger("it")
    for step in range(3000):
        logs({"a": step / 3, "b": -step / 7}, step)
    taken = buf.take()
    logs({"a": 1.5}, 3000)  # a new batch: the taken one's arrays are let go
    assert buf.spill() == 1
    spilled = [r for name in spool.pending() for r in spool.read(name)]
    for records, steps in ((taken.records, range(3000)), (spilled, [3000])):
        [record] = records
        assert type(record.payload) is bytes
        body = decode(record.payload).body
        assert isinstance(body, MetricsLogged)
        assert list(array("q", body.steps)) == [s for s in steps for _ in body.keys]
        assert len(body.times) == len(body.steps)
    values = array("d", decode(taken.records[0].payload).body.values)  # type: ignore[union-attr]
    assert list(values) == [v for s in range(3000) for v in (s / 3, -s / 7)]


def test_drain_hooks_run_before_taking(spool: Spool) -> None:
    buf = EventBuffer(spool)

    def hook() -> None:
        buf.emit(ParamsLogged(iteration_id="it", params={"from": "hook"}))

    buf.add_drain_hook(hook)
    assert [type(e.body) for e in buf.drain()] == [ParamsLogged]
    buf.remove_drain_hook(hook)
    assert buf.drain() == []


def test_log_metrics_equals_one_call_per_key(spool: Spool) -> None:
    """The batched path (known keys, open batch) and the general one land the same
    points, rejections included, whatever mix a call holds."""
    calls: list[tuple[dict[str, object], int | None]] = [
        ({"a": 1.0, "b": 2.0}, 0),  # new keys: the general path
        ({"a": 1.5, "b": 2.5}, 1),  # known keys: the batched path
        ({"a": 1.7, "c": 3.0}, 2),  # one new key among known ones
        ({"a": "bad", "b": 2.7}, 3),  # a bad value after nothing: rejected alone
        ({"b": 2.8, "a": [1]}, 4),  # a bad value after a good one
        ({"a": 1.9}, None),  # auto step
        ({"a": 2.0}, -1),  # a negative step: rejected
        ({"a": 2.1, "b": 3.1, "c": 4.1}, 5),  # the batched path, keys in one order...
        ({"c": 4.2, "a": 2.2, "b": 3.2}, 6),  # ...then another: each value keeps its key
        ({"c": 4.3, "a": 2.3, "b": 3.3}, 7),  # the same order again (its index reused)
        ({"a": 2.4, "b": 3.4, "c": 4.4}, 2**63),  # a step past int64: rejected
        ({"a": True, "b": 7, "c": 4.5}, 8),  # bools and ints are numbers
    ]
    one, many = EventBuffer(spool), EventBuffer(spool)
    for metrics, step in calls:
        many.log_metrics("it", metrics, step)  # type: ignore[arg-type]
        for key, value in metrics.items():
            one.log_metric("it", key, value, step)  # type: ignore[arg-type]
    strip = [p[:4] for p in points_of(many.drain())]  # (iteration, key, step, value)
    assert strip == [p[:4] for p in points_of(one.drain())]
    assert [(k, s) for _, k, s, _ in strip] == [
        ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("c", 2),
        ("b", 3), ("b", 4), ("a", AUTO_STEP),
        ("a", 5), ("b", 5), ("c", 5), ("c", 6), ("a", 6), ("b", 6),
        ("c", 7), ("a", 7), ("b", 7), ("a", 8), ("b", 8), ("c", 8),
    ]  # fmt: skip
    values = {(k, s): v for _, k, s, v in strip}
    assert values[("c", 6)] == 4.2 and values[("a", 7)] == 2.3 and values[("b", 8)] == 7.0
    assert many.rejected == one.rejected == 6


def test_known_keys_take_the_inlined_path_with_every_check_kept(spool: Spool) -> None:
    """An iteration's bound logger appends a float of a known key at a plain or automatic
    step in place; anything else (ints, bools, bad values or steps, a key of another
    group or past an event) still takes the checked path -- the same points and
    rejections as before, in calling order."""
    buf = EventBuffer(spool, max_points_per_envelope=8)
    log = buf.metric_logger("it")
    log("loss", 1.0, 0)  # a new key: the checked path opens the batch
    log("loss", math.nan, 1)  # known key: inlined, NaN kept as it is
    log("loss", 2.0)  # automatic step
    log("loss", 3, 3)  # an int: converted by the checked path
    log("loss", True, 4)  # a bool is a number too
    log("loss", "high", 5)  # type: ignore[arg-type]  # rejected, never raised
    log("loss", 4.0, -2)  # a negative step: rejected
    log("loss", 4.0, 1.5)  # type: ignore[arg-type]  # a float step: rejected
    log("loss", 4.0, 1 << 70)  # past int64: rejected
    log("loss", 5.0, 2**62 + 1)  # past MAX_STEP: appended (the server refuses it) as before
    log("loss", 6.0, 7, "val")  # another group: another batch
    buf.emit(ParamsLogged(iteration_id="it", params={"lr": "0.1"}))
    log("loss", 7.0, 8)  # after an event: a new batch, after it
    for step in range(9, 20):  # past the envelope limit: the batch closes at 8 points
        log("loss", float(step), step)
    assert buf.rejected == 4
    envs = buf.drain()
    bodies = [type(e.body).__name__ for e in envs]
    assert bodies == ["MetricsLogged", "MetricsLogged", "ParamsLogged"] + ["MetricsLogged"] * 2
    got = points_of(envs)
    assert [(s, v) for _, _, s, v in got[:6] if not math.isnan(v)] == [
        (0, 1.0), (AUTO_STEP, 2.0), (3, 3.0), (4, 1.0), (2**62 + 1, 5.0)
    ]  # fmt: skip
    assert math.isnan(got[1][3]) and got[1][2] == 1
    assert got[6][2:] == (7, 6.0) and [p[2] for p in got[7:]] == list(range(8, 20))
    val = envs[1].body
    assert isinstance(val, MetricsLogged) and val.group == "val"
    assert [e.body.num_points for e in envs[3:] if isinstance(e.body, MetricsLogged)] == [8, 4]
    # the module-level entry point is the same logger
    other = EventBuffer(spool, max_points_per_envelope=8)
    for call in [("loss", 1.0, 0), ("loss", math.nan, 1), ("loss", 2.0, None), ("loss", 3, 3)]:
        other.log_metric("it", *call)
    assert points_of(other.drain())[2:] == got[2:4]


def test_an_iterations_log_metric_is_its_bound_logger(tmp_path: Path) -> None:
    import deardiary as dd

    c = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    try:
        it = c.start_iteration(project="p", experiment="e", capture_env=False)
        assert it.log_metric.__name__ == "log_metric" and "log_metric" in vars(it)
        assert it.log_metrics.__name__ == "log_metrics" and "log_metrics" in vars(it)
        it.log_metric("loss", 0.5)
        it.log_metric("loss", 0.25, 3)
        it.log_metric("acc", 1)
        from deardiary.iteration import Iteration

        Iteration.log_metric(it, "acc", 0.5, 4)  # the class's method does the same
        it.log_metrics({"acc": 0.75, "loss": 0.125}, 5)
        it.log_metrics({"loss": 0.0625, "acc": 0.875}, 6, group="val")
        Iteration.log_metrics(it, {"acc": 1.0}, 7)
        it.end()
        c.flush(timeout=60)
        rows = c.sql(
            'SELECT key, step, value, "group" FROM metrics ORDER BY key DESC, "group", step'
        ).to_pylist()
        assert [tuple(r.values()) for r in rows] == [
            ("loss", 0, 0.5, ""), ("loss", 3, 0.25, ""), ("loss", 5, 0.125, ""),
            ("loss", 6, 0.0625, "val"),
            ("acc", 0, 1.0, ""), ("acc", 4, 0.5, ""), ("acc", 5, 0.75, ""), ("acc", 7, 1.0, ""),
            ("acc", 6, 0.875, "val"),
        ]  # fmt: skip
    finally:
        c.close()


def test_staged_points_keep_their_place_among_every_other_way_in(spool: Spool) -> None:
    """Inlined points wait in the batch's stage (settled 1,024 at a time) while log_metrics
    and checked calls append to the columns: every point keeps its calling order, and
    envelopes still close at exactly the limit."""
    buf = EventBuffer(spool, max_points_per_envelope=3000, max_points=100_000)
    log = buf.metric_logger("it")
    expected: list[tuple[str, int, float]] = []
    log("a", 0.0, 0)
    log("b", 0.0, 0)
    expected += [("a", 0, 0.0), ("b", 0, 0.0)]
    for i in range(1, 7000):
        if i % 700 == 0:
            buf.log_metrics("it", {"b": float(i), "a": -float(i)}, i)
            expected += [("b", i, float(i)), ("a", i, -float(i))]
        elif i % 900 == 0:
            log("a", i, i)  # an int: the checked path
            expected.append(("a", i, float(i)))
        else:
            log("a", float(i), i)
            expected.append(("a", i, float(i)))
        if i == 5:
            # staged, not yet in the columns (the first settled at once, to get room)
            assert len(buf._open[("it", "")].stage) == 4 * 4
    envs = buf.drain()
    assert [(k, s, v) for _, k, s, v in points_of(envs)] == expected
    sizes = [e.body.num_points for e in envs if isinstance(e.body, MetricsLogged)]
    assert sizes == [3000, 3000, len(expected) - 6000]
    times = [t for e in envs if isinstance(e.body, MetricsLogged) for t in array("q", e.body.times)]
    assert times == sorted(times) and len(times) == len(expected)


def test_checked_points_then_staged_ones_still_close_at_the_limit(spool: Spool) -> None:
    buf = EventBuffer(spool, max_points_per_envelope=1500, max_points=100_000)
    log = buf.metric_logger("it")
    for i in range(1100):  # ints: each takes the checked path, straight into the columns
        log("a", i, i)
    for i in range(1100, 3200):
        log("a", float(i), i)
    envs = buf.drain()
    sizes = [e.body.num_points for e in envs if isinstance(e.body, MetricsLogged)]
    assert sizes == [1500, 1500, 200]
    assert [s for _, _, s, _ in points_of(envs)] == list(range(3200))


def test_staged_points_are_counted_before_any_line_with_many_batches_open(
    spool: Spool,
) -> None:
    """Inlined points are counted when they settle, and a batch may stage only what is
    left before the next check, the other open batches' rooms counted as full: with four
    batches open at once the shipper is still woken by the point that reaches
    `wake_points`, and the pending points never pass `max_points`."""
    buf = EventBuffer(spool, max_points=1_000, wake_points=300, max_points_per_envelope=400)
    woken: list[int] = []
    buf.on_pressure = lambda: woken.append(buf.pending_points)
    loggers = [(buf.metric_logger(it), group) for it in ("a", "b") for group in ("", "val")]
    seen_max = 0
    for i in range(6_000):
        log, group = loggers[i % 4]
        log("x", float(i), i, group)
        seen_max = max(seen_max, buf.pending_points)
        if i == 298:
            assert woken == []
        if i == 299:
            assert woken == [300]
    assert seen_max <= 1_000
    assert len(spool.pending()) >= 5
    assert woken == [300] * len(spool.pending())  # once per spill (a drain), exactly at 300
    everything = spooled(spool) + buf.drain()
    got: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for env in everything:
        if isinstance(env.body, MetricsLogged):
            mine = got.setdefault((env.body.iteration_id, env.body.group), [])
            mine += [(s, v) for _, _, s, v in points_of([env])]
    for n, (_, group) in enumerate(loggers):
        it = "ab"[n // 2]
        assert got[(it, group)] == [(i, float(i)) for i in range(n, 6_000, 4)]


def test_every_point_keeps_its_own_time(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time column holds each call's own wall clock in microseconds, whichever way
    the point went in (inlined, checked, several keys at once)."""
    import deardiary.buffer as buffer_module

    clock = iter(range(1_700_000_000_000_000_000, 1 << 62, 1_234_567))
    monkeypatch.setattr(buffer_module, "_now_ns", lambda: next(clock))
    buf = EventBuffer(spool, max_points_per_envelope=700)
    log, logs = buf.metric_logger("it"), buf.metrics_logger("it")
    for i in range(3_000):
        if i % 500 == 7:
            logs({"x": float(i)}, i)
        else:
            log("x", i if i % 300 == 0 else float(i), i)
    times = [t for e in buf.drain() for t in array("q", e.body.times)]  # type: ignore[union-attr]
    first = 1_700_000_000_000_000_000
    assert times == [(first + n * 1_234_567) // 1000 for n in range(3_000)]
