"""MessagePack encoding of envelopes, with typed encoders/decoders built once.

An envelope whose body has an unknown type (written by a newer release) does not
fail the reader: `decode_record` returns a `ParkedRecord` that the projector keeps
and reports.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import InvalidArgument


class RawEnvelope(msgspec.Struct, kw_only=True):
    """The envelope with its body left undecoded, to salvage what an unknown event says."""

    event_id: str = ""
    key: str = ""
    client_time: int = 0
    actor: str = ""
    schema_version: int = 0
    body: msgspec.Raw = msgspec.Raw(b"")


class ParkedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record the reader could not decode; kept, never silently dropped."""

    event_id: str
    event_type: str
    error: str
    payload: bytes


_encoder = msgspec.msgpack.Encoder()


@functools.cache
def _decoders() -> tuple[
    msgspec.msgpack.Decoder[Envelope],
    msgspec.msgpack.Decoder[RawEnvelope],
    msgspec.msgpack.Decoder[dict[str, Any]],
]:
    """Built on first use, once: the Envelope decoder compiles the whole event union
    (~10 ms), which a process that only writes events (an SDK trial) never needs."""
    return (
        msgspec.msgpack.Decoder(Envelope),
        msgspec.msgpack.Decoder(RawEnvelope),
        msgspec.msgpack.Decoder(dict[str, Any]),
    )


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def encode_many(envelopes: list[Envelope]) -> list[bytes]:
    return [_encoder.encode(e) for e in envelopes]


def decode(payload: bytes) -> Envelope:
    """Decode and validate; malformed bytes raise `InvalidArgument` keeping msgspec's $.path."""
    try:
        return _decoders()[0].decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"malformed event: {exc}") from exc
    except RecursionError as exc:
        raise InvalidArgument("malformed event: nested too deeply") from exc


def decode_record(payload: bytes) -> Envelope | ParkedRecord:
    """Decode a record read from the log; what cannot be decoded is parked, not raised."""
    decoder, raw_decoder, any_decoder = _decoders()
    try:
        return decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        event_id, event_type = "", ""
        try:
            raw = raw_decoder.decode(payload)
            event_id = raw.event_id[:200]
            body = any_decoder.decode(raw.body) if raw.body else {}
            event_type = str(body.get("type", ""))[:200]
        except (msgspec.DecodeError, RecursionError, AttributeError):
            pass
        return ParkedRecord(
            event_id=event_id, event_type=event_type, error=str(exc), payload=payload
        )
