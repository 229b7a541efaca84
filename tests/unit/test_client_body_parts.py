"""The ingest request body in parts (`deardiary.transport.body_parts`): the same bytes
msgspec encodes, with big payloads sent as they are rather than copied into the body."""

from __future__ import annotations

import msgspec
import pytest

from deardiary.transport import body_parts

# each MessagePack header width: fixarray/array16/array32, bin8/bin16/bin32
COUNTS = [0, 1, 15, 16, 65_535, 65_536]
SIZES = [0, 1, 255, 256, 65_535, 65_536, 70_000]


@pytest.mark.parametrize("size", SIZES)
def test_parts_join_to_what_msgspec_encodes(size: int) -> None:
    payloads = [bytes([k % 251]) * size for k in range(3)]
    assert b"".join(body_parts(payloads)) == msgspec.msgpack.encode(payloads)


@pytest.mark.parametrize("count", COUNTS)
def test_every_array_header(count: int) -> None:
    payloads = [b"xy"] * count
    assert b"".join(body_parts(payloads)) == msgspec.msgpack.encode(payloads)


def test_big_payloads_are_parts_of_their_own_and_not_copied() -> None:
    big, bigger = b"b" * 65_536, b"c" * 600_000
    payloads = [b"a", big, b"s" * 300, bigger]
    parts = body_parts(payloads)
    assert parts[1] is big and parts[3] is bigger
    assert len(parts) == 4  # the headers and small payloads between are joined
    assert b"".join(parts) == msgspec.msgpack.encode(payloads)
