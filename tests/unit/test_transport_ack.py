"""Reading the gateway's acknowledgement (client/transport.py): MessagePack as the SDK
asks for it, by msgspec when loaded and by `schemas/wire.py` when not (a trial process),
JSON from a server that answers only that; anything else is no acknowledgement."""

from __future__ import annotations

import json
import sys

import msgspec
import pytest

from deardiary.transport import _acked

ACK = {
    "positions": [
        {"partition": 0, "offset": 5, "log_time": 1},
        {"partition": 2, "offset": 9, "log_time": 1},
    ],
    "last_offset": 9,
    "last_offsets": {"0": 5, "2": 9},
}
MSGPACK = "application/msgpack"


@pytest.mark.parametrize("msgspec_loaded", [True, False])
def test_a_msgpack_ack_gives_each_partitions_last_offset(
    monkeypatch: pytest.MonkeyPatch, msgspec_loaded: bool
) -> None:
    if not msgspec_loaded:
        monkeypatch.delitem(sys.modules, "msgspec")
    assert _acked(msgspec.msgpack.encode(ACK), MSGPACK) == {0: 5, 2: 9}


def test_a_json_ack_reads_the_same() -> None:
    assert _acked(json.dumps(ACK).encode(), "application/json; charset=utf-8") == {0: 5, 2: 9}


def test_an_ack_without_partitions_is_partition_zeros() -> None:
    ack = {"positions": [], "last_offset": 3}
    assert _acked(msgspec.msgpack.encode(ack), MSGPACK) == {0: 3}


@pytest.mark.parametrize("msgspec_loaded", [True, False])
@pytest.mark.parametrize(
    "body",
    [
        [1, 2],  # not a map
        {"positions": []},  # no last offset
        {"last_offset": "9"},
        {"last_offset": 9, "last_offsets": {"x": 9}},  # not a partition number
        {"last_offset": 9, "last_offsets": {"0": 1.5}},
        {"last_offset": 9, "last_offsets": [9]},
    ],
)
def test_anything_else_is_no_acknowledgement(
    monkeypatch: pytest.MonkeyPatch, msgspec_loaded: bool, body: object
) -> None:
    if not msgspec_loaded:
        monkeypatch.delitem(sys.modules, "msgspec")
    with pytest.raises((ValueError, KeyError, TypeError)):
        _acked(msgspec.msgpack.encode(body), MSGPACK)
    with pytest.raises((ValueError, KeyError, TypeError)):
        _acked(b"\x93\x01", MSGPACK)  # truncated
