"""The standard-library MessagePack of the SDK's write path (schemas/wire.py) against
msgspec: the same bytes for every value it takes, every event the SDK writes as a dict
byte for byte its event type's encoding, and the reader the acknowledgements go through."""

from __future__ import annotations

import datetime
import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deardiary as dd
from deardiary.schemas import wire
from deardiary.schemas.codec import decode, encode
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import IterationStatus
from deardiary.services.log.sqlite import SqliteEventLog

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = (
    st.none()
    | st.booleans()
    | INT64
    | st.integers(min_value=-40, max_value=300)  # the headers' edges
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_pack_writes_what_msgspec_writes(value: Any) -> None:
    assert wire.pack(value) == msgspec.msgpack.encode(value)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_unpack_reads_what_msgspec_writes(value: Any) -> None:
    assert wire.unpack(msgspec.msgpack.encode(value)) == value


@pytest.mark.parametrize("size", [15, 16, 31, 32, 255, 256, 65_535, 65_536])
def test_every_header_width_matches(size: int) -> None:
    for value in ("x" * size, b"x" * size, [0] * size, {str(i): 0 for i in range(size)}):
        assert wire.pack(value) == msgspec.msgpack.encode(value)
        assert wire.unpack(wire.pack(value)) == value


def test_subclasses_and_views_encode_as_their_values() -> None:
    array_view = memoryview(bytes(range(16))).cast("d")
    for value in (IterationStatus.KILLED, True, math.nan, (1, 2), bytearray(b"ab")):
        assert wire.pack(value) == msgspec.msgpack.encode(value)
    assert wire.pack(array_view) == msgspec.msgpack.encode(bytes(array_view))


def test_what_msgpack_cannot_hold_is_refused_as_msgspec_does() -> None:
    for value, error in (
        (2**64, OverflowError),
        (-(2**63) - 1, OverflowError),
        (object(), TypeError),
    ):
        with pytest.raises(error):
            msgspec.msgpack.encode(value)
        with pytest.raises(error):
            wire.pack(value)
    with pytest.raises(UnicodeEncodeError):
        wire.pack("\udc80")  # a lone surrogate


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x91",  # an array of one, missing
        b"\xc1",  # never used
        b"\xd9\x05ab",  # a str longer than the bytes
        b"\x01\x02",  # two documents
        b"\x81\x90\x01",  # a list as a map key
        b"\xdd\xff\xff\xff\xff",  # four billion items announced
        b"\x91" * 40 + b"\x01",  # nested past the limit
        b"\xa2\xff\xfe",  # not UTF-8
        b"\xc7\x01\x01\x00",  # an extension type
    ],
)
def test_unpack_refuses_malformed_documents_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        wire.unpack(data)


def test_a_trials_events_are_byte_for_byte_their_types_encoding(tmp_path: Path) -> None:
    """Every record a trial's dict-built events became (project, experiment, iteration
    start with tags and metadata, params with types and nested config, metric batches,
    log lines, environment, heartbeats, end) decodes into its event type and encodes back to the
    very same bytes: no field left out (msgspec would write its default), none misnamed
    (decoding refuses unknown tags and wrong types), none out of order."""
    client = dd.connect(
        str(tmp_path / "data"), spool_dir=tmp_path / "spool", heartbeat_interval=0.02
    )
    with client.start_iteration(
        project="p",
        experiment="e",
        name="trial",
        params={"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}, "seed": 7},
        tags={"team": "a"},
        metadata={"k": [1, {"x": None}]},
        external_id="ext-1",
        notes="n",
    ) as it:
        for step in range(50):
            it.log_metrics({"loss": 1 / (step + 1), "acc": step / 50}, step=step)
        it.log_metric("nan", math.nan)
        it.log("a line", level="WARNING")
        time.sleep(0.3)  # a few heartbeats
    with pytest.raises(RuntimeError), client.start_iteration(project="p", experiment="e"):
        raise RuntimeError("failed")
    client.flush(timeout=60)
    client.close()
    log = SqliteEventLog(str(tmp_path / "data" / "log.db"))
    try:
        records = log.read({}, 10_000)
    finally:
        log.close()
    types = []
    for _, payload in records:
        envelope = decode(payload)
        types.append(type(envelope.body).__name__)
        assert encode(envelope) == payload, type(envelope.body).__name__
    assert sorted(set(types)) == [
        "EnvironmentCaptured",
        "ExperimentCreated",
        "IterationEnded",
        "IterationHeartbeat",
        "IterationStarted",
        "LogLinesLogged",
        "MetricsLogged",
        "ParamsLogged",
        "ProjectCreated",
    ]


def test_metadata_only_msgspec_encodes_still_arrives(tmp_path: Path) -> None:
    """A datetime, a UUID or a set in an iteration's metadata (msgspec encodes them;
    `wire.pack` refuses them): the event is encoded by msgspec then, as before the
    standard-library path, not dropped."""
    client = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    metadata = {"when": when, "id": uuid.UUID(int=5), "seen": {1}}
    with client.start_iteration(project="p", experiment="e", metadata=metadata):
        pass
    client.flush(timeout=60)
    rows = client.sql("SELECT metadata FROM iterations").to_pylist()
    client.close()
    assert json.loads(rows[0]["metadata"]) == {
        "when": "2026-01-02T03:04:05Z",
        "id": "00000000-0000-0000-0000-000000000005",
        "seen": [1],
    }


def test_metadata_nested_past_any_encoder_is_rejected_never_raised(tmp_path: Path) -> None:
    """Metadata nested thousands deep (neither encoder gets through it: RecursionError)
    is dropped and raised by the next flush, never into the caller's `start_iteration`
    (it raised there before)."""
    deep: list[Any] = []
    inner = deep
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    client = dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool")
    client.start_iteration(project="p", experiment="e", metadata={"deep": deep})
    with pytest.raises(InvalidArgument, match="cannot encode iteration_started"):
        client.flush(timeout=60)
    client.close()
