"""Bytes written by release 1 decode forever, to exactly the events they were."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from deardiary.schemas import codec
from deardiary.schemas.events import EVENT_TYPES, event_tag
from tests.golden.examples import EXAMPLES, VARIANTS, envelope

GOLDEN = Path(__file__).with_name("v1")


def test_every_event_type_has_golden_bytes() -> None:
    tags = {t.__struct_config__.tag for t in EVENT_TYPES}
    assert {p.stem.split(".")[0] for p in GOLDEN.glob("*.msgpack")} == tags
    assert {p.stem for p in GOLDEN.glob("*.*.msgpack")} == set(VARIANTS)


@pytest.mark.parametrize("event", EXAMPLES, ids=event_tag)
def test_golden_bytes_decode_to_the_same_event(event: object) -> None:
    stored = (GOLDEN / f"{event_tag(event)}.msgpack").read_bytes()  # type: ignore[arg-type]
    decoded = codec.decode(stored)
    expected = envelope(event)  # type: ignore[arg-type]
    # compared as encoded bytes: NaN payloads compare bit-exactly, and fields added
    # later (with defaults) appear on both sides
    assert msgspec.msgpack.encode(decoded) == msgspec.msgpack.encode(expected)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_later_wire_forms_decode_to_the_same_event(name: str) -> None:
    decoded = codec.decode((GOLDEN / f"{name}.msgpack").read_bytes())
    expected = envelope(VARIANTS[name])
    assert msgspec.msgpack.encode(decoded) == msgspec.msgpack.encode(expected)
