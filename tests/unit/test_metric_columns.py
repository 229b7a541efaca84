"""The embedded log's column-wise storage of metric batches gives back the very bytes
appended, for any batch; anything else, or a damaged row, is never turned into one."""

from __future__ import annotations

import struct

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.schemas import codec
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import LogLinesLogged, MetricsLogged
from deardiary.services.log.sqlite import METRIC_COLUMNS, PLAIN, ZSTD, loaded, stored

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def batches(draw: st.DrawFn) -> MetricsLogged:
    """Any columns the schema admits on the wire: values as raw bits (NaNs with payloads,
    -0.0, infinities), steps and times across the whole int64 range (differences wrap)."""
    keys = draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(1, 600))
    key_index = draw(st.lists(st.integers(0, len(keys) - 1), min_size=n, max_size=n))
    steps = draw(st.lists(I64, min_size=n, max_size=n))
    bits = draw(st.lists(U64, min_size=n, max_size=n))
    times = draw(st.lists(I64, min_size=n, max_size=n))
    return MetricsLogged(
        iteration_id="it-1",
        keys=keys,
        key_index=np.array(key_index, "<u2").tobytes(),
        steps=np.array(steps, "<i8").tobytes(),
        values=np.array(bits, "<u8").tobytes(),
        times=np.array(times, "<i8").tobytes(),
        group=draw(st.sampled_from(["", "val"])),
    )


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(batches())
def test_any_metric_batch_reads_back_byte_for_byte(batch: MetricsLogged) -> None:
    payload = codec.encode(wrap(batch))
    data, how = stored(payload)
    assert loaded(data, how) == payload
    if how != PLAIN:
        assert how == METRIC_COLUMNS and len(data) < len(payload)


def _curve_batch(points: int) -> bytes:
    rng = np.random.default_rng(3)
    keys = ["loss", "acc", "lr", "grad_norm", "val_loss"]
    steps = np.repeat(np.arange(points // 5), 5)
    return codec.encode(
        wrap(
            MetricsLogged(
                iteration_id="it-1",
                keys=keys,
                key_index=np.tile(np.arange(5, dtype="<u2"), points // 5).tobytes(),
                steps=steps.astype("<i8").tobytes(),
                values=np.cumsum(rng.normal(0, 0.01, points)).astype("<f8").tobytes(),
                times=(1_764_000_000_000_000 + steps * 3_000).astype("<i8").tobytes(),
            )
        )
    )


def test_a_noisy_curve_takes_under_eight_bytes_a_point() -> None:
    """Plain zstd over the whole payload keeps ~10 bytes a point of such curves."""
    payload = _curve_batch(20_000)
    data, how = stored(payload)
    assert how == METRIC_COLUMNS and len(data) < 8 * 20_000
    assert loaded(data, how) == payload


def test_other_events_and_unusual_framing_are_compressed_whole() -> None:
    lines = LogLinesLogged(
        iteration_id="it-1", times=[1] * 900, levels=["INFO"] * 900, messages=["step"] * 900
    )
    as_dict = msgspec.msgpack.decode(_curve_batch(1_000))
    body = as_dict["body"]
    reordered = {**as_dict, "body": {k: body[k] for k in reversed(body)}}  # times first
    renamed = {**as_dict, "body": {**body, "type": "metrics_logged_v9"}}
    for payload in (
        codec.encode(wrap(lines)),
        msgspec.msgpack.encode(reordered),
        msgspec.msgpack.encode(renamed),
    ):
        data, how = stored(payload)
        assert how == ZSTD
        assert loaded(data, how) == payload


def test_a_damaged_stored_batch_comes_back_as_stored() -> None:
    """Never an exception, a wrong payload, or an allocation the header asks for."""
    data, how = stored(_curve_batch(5_000))
    assert how == METRIC_COLUMNS
    header = list(struct.unpack_from("<" + "Q" * 14, data))
    huge = struct.pack("<" + "Q" * 14, 1 << 62, *header[1:]) + data[112:]
    shifted = struct.pack("<" + "Q" * 14, *header[:4], header[4] + 1, *header[5:]) + data[112:]
    for damaged in (data[:60], data[:-5], huge, shifted, data[:112] + b"\0" * (len(data) - 112)):
        assert loaded(damaged, METRIC_COLUMNS) == damaged


def test_the_stored_columns_are_the_documented_transforms() -> None:
    """A guard on the on-disk form (logs already written read with it): after the header,
    one zstd frame each of the key indexes as they are, steps and times as wrapping
    differences from 0, the values grouped by key (stable) in byte planes, then the rest."""
    import pyarrow as pa

    n = 3_000
    rng = np.random.default_rng(5)
    key_index = rng.integers(0, 3, n).astype("<u2")
    steps = rng.integers(-(2**63), 2**63 - 1, n, dtype="<i8")  # differences wrap
    times = 1_764_000_000_000_000 + np.arange(n, dtype="<i8") * 1_000
    values = rng.normal(0, 1, n).astype("<f8")
    batch = MetricsLogged(
        iteration_id="it-1",
        keys=["a", "b", "c"],
        key_index=key_index.tobytes(),
        steps=steps.tobytes(),
        values=values.tobytes(),
        times=times.tobytes(),
    )
    payload = codec.encode(wrap(batch))
    data, how = stored(payload)
    assert how == METRIC_COLUMNS
    header = struct.unpack_from("<" + "Q" * 14, data)
    sizes = [header[3 + 3 * i] for i in range(4)] + [header[13]]
    raw = [header[2 + 3 * i] for i in range(4)] + [len(payload) - sum(header[2:13:3])]
    zstd, at, parts = pa.Codec("zstd"), 112, []
    for size, raw_size in zip(sizes, raw, strict=True):
        parts.append(zstd.decompress(data[at : at + size], raw_size, asbytes=True))
        at += size
    by_key = values.view("<u8")[np.argsort(key_index, kind="stable")]
    assert parts[:4] == [
        key_index.tobytes(),
        np.diff(steps, prepend=0).tobytes(),
        by_key.view("u1").reshape(-1, 8).T.tobytes(),
        np.diff(times, prepend=0).tobytes(),
    ]
    assert at == len(data) and len(parts[4]) == raw[4]
