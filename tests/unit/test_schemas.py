"""Every event type round-trips; ids, keys and the codec's error handling."""

from __future__ import annotations

import importlib
import json
import math
import struct
import subprocess
import sys
import textwrap

import msgspec
import pytest

from deardiary.schemas import codec, events, ids
from deardiary.schemas.codec import ParkedRecord
from deardiary.schemas.envelope import wrap
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import (
    EVENT_TYPES,
    IterationEnded,
    MetricsLogged,
    ModelVersionStaged,
    event_tag,
    partition_key,
)
from tests.golden.examples import EXAMPLES, envelope


def test_examples_cover_every_event_type() -> None:
    assert {type(e) for e in EXAMPLES} == set(EVENT_TYPES)
    tags = [t.__struct_config__.tag for t in EVENT_TYPES]
    assert len(tags) == len(set(tags)) and all(isinstance(t, str) for t in tags)


def test_the_package_loads_each_name_from_its_module_on_first_use() -> None:
    """Importing `deardiary.schemas.events` creates no event class; a name loads its
    module only, and `Event` / `EVENT_TYPES` (union.py) every module. In a fresh
    interpreter (this one has loaded them all), where the package's parent `deardiary`
    (the SDK) loads none: what a trial writes loads with a client's first write."""
    probe = textwrap.dedent(
        """
        import json, sys
        def loaded():
            prefix = "deardiary.schemas.events."
            return sorted(m[len(prefix):] for m in sys.modules if m.startswith(prefix))
        import deardiary.schemas.events as ev
        seen = [loaded()]
        from deardiary.schemas.events import TagsSet
        seen.append(loaded())
        from deardiary.schemas.envelope import wrap  # its body annotation: not resolved yet
        seen.append(loaded())
        ev.Event
        seen.append(loaded())
        print(json.dumps(seen))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    sdk, tags, enveloped, union = json.loads(out)
    assert sdk == []
    assert tags == ["base", "entities"]
    assert enveloped == tags
    rest = {"access", "artifacts", "checkpoints", "iterations", "logs", "media", "metrics"}
    rest |= {"params", "projects", "registry", "usage"}
    assert set(union) == set(tags) | rest | {"union"}


def test_every_name_of_the_package_is_its_module_s() -> None:
    for name in events.__all__:
        value = getattr(events, name)
        if name in ("Event", "EVENT_TYPES", "event_tag", "partition_key"):
            continue
        module = importlib.import_module(f"deardiary.schemas.events.{events._WHERE[name]}")
        assert getattr(module, name) is value, name
    assert set(events._WHERE) | {"event_tag", "partition_key"} == set(events.__all__)
    for event_type in EVENT_TYPES:  # every type of the union is a name of the package
        assert getattr(events, event_type.__name__) is event_type
    assert events.Event.__args__ == EVENT_TYPES
    with pytest.raises(AttributeError):
        getattr(events, "NoSuchEvent")  # noqa: B009


@pytest.mark.parametrize("event", EXAMPLES, ids=event_tag)
def test_round_trip(event: object) -> None:
    env = envelope(event)  # type: ignore[arg-type]
    decoded = codec.decode(codec.encode(env))
    assert msgspec.msgpack.encode(decoded) == msgspec.msgpack.encode(env)
    assert type(decoded.body) is type(event)


def test_non_finite_metric_values_survive_bit_exactly() -> None:
    weird_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    values = [math.nan, math.inf, -math.inf, -0.0, weird_nan]
    batch = MetricsLogged.from_points("i", ["k"] * 5, values, [-1] * 5, [0] * 5)
    back = codec.decode(codec.encode(wrap(batch))).body
    assert isinstance(back, MetricsLogged)
    assert back.values == batch.values  # the raw little-endian bytes, payloads included
    assert back.num_points == 5


def test_partition_keys_keep_an_aggregate_together() -> None:
    assert partition_key(IterationEnded(iteration_id="it", status="FAILED")) == "it"  # type: ignore[arg-type]
    staged = ModelVersionStaged(model_version_id="v", model_id="m", stage="Staging")  # type: ignore[arg-type]
    assert partition_key(staged) == "m"
    for event in EXAMPLES:
        assert partition_key(event)


def test_ids() -> None:
    assert ids.project_id("a") == ids.project_id("a") != ids.project_id("b")
    assert ids.experiment_id("p", "e") != ids.experiment_id("q", "e")
    fresh = [ids.new_id() for _ in range(100_000)]
    assert len(set(fresh)) == len(fresh)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in fresh[:1000])
    assert fresh[0][:12] <= fresh[-1][:12]  # the leading 48 bits are the millisecond clock


def test_malformed_bytes_are_invalid_argument_with_the_path() -> None:
    with pytest.raises(InvalidArgument):
        codec.decode(b"\xc1not msgpack")
    bad = msgspec.msgpack.encode(
        {
            "event_id": "x",
            "key": "k",
            "client_time": 1,
            "body": {"type": "iteration_heartbeat", "iteration_id": 42},
        }
    )
    with pytest.raises(InvalidArgument, match=r"\$\.body\.iteration_id"):
        codec.decode(bad)


def test_unknown_event_types_are_parked_with_their_bytes() -> None:
    payload = msgspec.msgpack.encode(
        {
            "event_id": "e-9",
            "key": "k",
            "client_time": 1,
            "body": {"type": "from_the_future", "x": 1},
        }
    )
    parked = codec.decode_record(payload)
    assert isinstance(parked, ParkedRecord)
    assert (parked.event_id, parked.event_type, parked.payload) == (
        "e-9",
        "from_the_future",
        payload,
    )
