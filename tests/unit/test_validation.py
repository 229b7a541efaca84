"""The gateway's checks as pure functions: keys, metric columns, partition keys, ids,
batch decoding -- and that no input makes them fail with anything but a typed error."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import (
    DearDiaryError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from deardiary.schemas.events import (
    EntityKind,
    Event,
    IterationStarted,
    LogLinesLogged,
    MetricsLogged,
    ParamsLogged,
    PermissionGranted,
    TagsDeleted,
    TagsSet,
    partition_key,
)
from deardiary.schemas.rules import key_problem
from deardiary.services.gateway.validation import (
    IngestLimits,
    parse_json,
    parse_msgpack,
    validate_envelope,
)

LIMITS = IngestLimits()


def env(body: Event, **override: Any) -> Envelope:
    fields: dict[str, Any] = {
        "event_id": "ev-1",
        "body": body,
        "key": partition_key(body),
        "client_time": 1,
    }
    fields.update(override)
    return Envelope(**fields)


def metrics(**columns: Any) -> MetricsLogged:
    good = MetricsLogged.from_points("it-1", ["loss", "acc"], [0.5, 0.9], [0, -1], [10, 11])
    return msgspec.structs.replace(good, **columns)


def problem(envelope: Envelope, limits: IngestLimits = LIMITS) -> str:
    """Why the gateway refuses this envelope sent as bytes (decoding checks the declared
    bounds; validation the rest)."""
    with pytest.raises(DearDiaryError) as caught:
        parse_msgpack(msgspec.msgpack.encode([encode(envelope)]), limits)
    return caught.value.message


@pytest.mark.parametrize(
    "key",
    [
        "loss",
        "train/loss",
        "a b:c.d-e_f",
        "Verlust_ä",
        "époch 2",
        "损失",
        "x" * 250,
        "a..b",
        "./a",
        "a/",
    ],
)
def test_valid_keys(key: str) -> None:
    assert key_problem(key, 250) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("x" * 251, "longer than 250"),
        ("../x", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("a/..", "'..' segment"),
        ("/abs", "start with '/'"),
        ("a\x00b", "may only contain"),
        ("a\nb", "may only contain"),
        ("a\tb", "may only contain"),
        ("a\x7fb", "may only contain"),
        ("a*b", "may only contain"),
        ("a\\b", "may only contain"),
    ],
)
def test_invalid_keys(key: str, why: str) -> None:
    found = key_problem(key, 250)
    assert found is not None and why in found


@pytest.mark.parametrize(
    "body",
    [
        metrics(keys=["../x", "acc"]),
        ParamsLogged(iteration_id="it-1", params={"lr\x01": "1"}),
        TagsSet(entity=EntityKind.ITERATION, entity_id="it-1", tags={"/root": "v"}),
        TagsDeleted(entity=EntityKind.ITERATION, entity_id="it-1", keys=["x" * 251]),
        IterationStarted(iteration_id="it-1", experiment_id="e", tags={"a/../b": ""}),
    ],
)
def test_keys_are_checked_on_every_event_that_carries_them(body: Event) -> None:
    assert "key" in problem(env(body))


def test_a_good_metrics_batch_passes_and_an_empty_one_too() -> None:
    validate_envelope(env(metrics()), LIMITS)
    empty = MetricsLogged.from_points("it-1", [], [], [], [])
    validate_envelope(env(empty), LIMITS)


@pytest.mark.parametrize(
    ("columns", "why"),
    [
        ({"values": b"\0" * 15}, "8 bytes"),
        ({"key_index": b"\0\0"}, "key_index has 2 bytes, expected 4"),
        ({"steps": b"\0" * 24}, "steps has 24 bytes"),
        ({"times": b""}, "times has 0 bytes"),
        ({"key_index": struct.pack("<2H", 0, 2)}, "past the 2 keys"),
        ({"steps": struct.pack("<2q", 0, -2)}, "steps must be 0.."),
        ({"steps": struct.pack("<2q", 0, 2**63 - 1)}, "steps must be 0.."),
        ({"times": struct.pack("<2q", 0, 2**62)}, "times must be"),
        ({"times": struct.pack("<2q", -1, 0)}, "times must be"),
        ({"keys": ["loss", "loss"]}, "distinct"),
    ],
)
def test_inconsistent_metric_columns(columns: dict[str, Any], why: str) -> None:
    assert why in problem(env(metrics(**columns)))


def test_partition_key_event_id_and_required_ids() -> None:
    assert "partition key" in problem(env(metrics(), key="other"))
    assert "event_id" in problem(env(metrics(), event_id=""))
    assert "iteration_id" in problem(env(metrics(iteration_id=""), key="x"))
    assert "client_time" in problem(env(metrics(), client_time=2**62))
    # optional ids may be empty or absent
    validate_envelope(env(IterationStarted(iteration_id="i", experiment_id="e")), LIMITS)


def test_param_values_and_log_columns() -> None:
    long_value = ParamsLogged(iteration_id="it-1", params={"lr": "x" * 6001})
    assert "length <= 6000" in problem(env(long_value))
    validate_envelope(env(ParamsLogged(iteration_id="it-1", params={"lr": "x" * 6000})), LIMITS)
    lines = LogLinesLogged(iteration_id="it-1", times=[1, 2], levels=["INFO"], messages=["a"])
    assert "differ in length" in problem(env(lines))


def test_access_events_are_refused_unless_accepted() -> None:
    grant = env(PermissionGranted(user_id="u", project_id="p", read=True))
    with pytest.raises(PermissionDenied):
        parse_msgpack(msgspec.msgpack.encode([encode(grant)]), LIMITS)
    validate_envelope(grant, IngestLimits(accept_access_events=True))


def batch(*envelopes: Envelope) -> bytes:
    return msgspec.msgpack.encode([encode(e) for e in envelopes])


def test_parse_msgpack_returns_envelopes_and_the_original_bytes() -> None:
    first, second = env(metrics()), env(metrics(), event_id="ev-2")
    envelopes, payloads = parse_msgpack(batch(first, second), LIMITS)
    assert envelopes == [first, second]
    assert payloads == [encode(first), encode(second)]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\xc1", "malformed MessagePack body"),
        (msgspec.msgpack.encode({"events": []}), "Expected `array`"),
        (msgspec.msgpack.encode(["not bin"]), "$[0]"),
        (msgspec.msgpack.encode([]), "no events"),
        (msgspec.msgpack.encode([b"\x93"]), "events[0]: malformed event"),
    ],
)
def test_parse_msgpack_refuses_malformed_bodies(body: bytes, why: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_msgpack(body, LIMITS)
    assert why in caught.value.message


def test_unknown_event_type_names_the_item_and_the_path() -> None:
    good = encode(env(metrics()))
    raw = msgspec.msgpack.decode(good)
    raw["body"]["type"] = "metrics_logged_v9"
    with pytest.raises(InvalidArgument) as caught:
        parse_msgpack(msgspec.msgpack.encode([good, msgspec.msgpack.encode(raw)]), LIMITS)
    assert caught.value.details["index"] == 1
    assert caught.value.details["path"] == "$.body.type"


def test_a_bad_item_anywhere_rejects_the_batch_and_names_it() -> None:
    bad = env(metrics(keys=["ok", "../x"]), event_id="ev-bad")
    with pytest.raises(InvalidArgument) as caught:
        parse_msgpack(batch(env(metrics()), env(metrics(), event_id="ev-2"), bad), LIMITS)
    assert caught.value.details["index"] == 2
    assert caught.value.details["event_id"] == "ev-bad"
    assert caught.value.message.startswith("events[2]: metric key")


def test_too_many_events_is_resource_exhausted() -> None:
    limits = IngestLimits(max_events=2)
    parse_msgpack(batch(env(metrics()), env(metrics())), limits)
    with pytest.raises(ResourceExhausted):
        parse_msgpack(batch(env(metrics()), env(metrics()), env(metrics())), limits)
    body = msgspec.json.encode({"events": [env(metrics())] * 3})
    with pytest.raises(ResourceExhausted):
        parse_json(body, limits)


def test_parse_json_roundtrips_metric_bytes_and_keeps_paths() -> None:
    nan_batch = MetricsLogged.from_points(
        "it-1", ["a", "a", "a"], [float("nan"), float("inf"), -float("inf")], [1, 2, 3], [0, 0, 0]
    )
    original = env(nan_batch)
    (decoded,) = parse_json(msgspec.json.encode({"events": [original]}), LIMITS)
    assert encode(decoded) == encode(original)
    with pytest.raises(InvalidArgument) as caught:
        parse_json(b'{"events": [{"event_id": 3}]}', LIMITS)
    assert caught.value.details["path"] == "$.events[0].event_id"
    with pytest.raises(InvalidArgument):
        parse_json(b'{"event": []}', LIMITS)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.binary(max_size=80), max_size=5).map(msgspec.msgpack.encode),
    )
)
def test_no_input_fails_with_anything_but_a_typed_error(body: bytes) -> None:
    with contextlib.suppress(DearDiaryError):
        parse_msgpack(body, LIMITS)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 400), st.sampled_from(["key_index", "steps", "values", "times"]))
def test_every_truncation_of_a_metric_column_is_caught(cut: int, column: str) -> None:
    good = MetricsLogged.from_points("it-1", ["k"] * 20, [0.0] * 20, list(range(20)), [0] * 20)
    data: bytes = getattr(good, column)
    if cut >= len(data):
        return
    with pytest.raises(InvalidArgument):
        validate_envelope(env(msgspec.structs.replace(good, **{column: data[:cut]})), LIMITS)
