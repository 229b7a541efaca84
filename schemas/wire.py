"""Envelopes encoded with the standard library alone, for processes that only write.

Why: importing msgspec loads `typing`, `datetime`, `uuid` (and `platform`), `decimal`
and its own Python modules -- ~20 ms of CPU, twice what a bare interpreter costs to
start, paid by every trial process of a sweep, which only ever encodes a handful of
envelopes. The SDK's write path builds each event's body as a plain dict (the event's
tag under ``"type"``, then its fields by name) and encodes it here; the server decodes
and validates those bytes with the event types of `schemas/events/` as it does any
other (`schemas/codec.py`), so an event written this way is the same event.

`pack` writes MessagePack as msgspec does -- the smallest header for each value, floats
as float64 -- and a dict body with every field of its event type, in the type's order,
is byte for byte what msgspec writes for the event (the tests hold both to that).
"""

from __future__ import annotations

from struct import Struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 1
"""The envelope's version (see EVOLUTION.md), here so both encoders write the same."""

_float = Struct(">Bd").pack
_u16 = Struct(">BH").pack
_u32 = Struct(">BI").pack
_u64 = Struct(">BQ").pack
_i8 = Struct(">Bb").pack
_i16 = Struct(">Bh").pack
_i32 = Struct(">Bi").pack
_i64 = Struct(">Bq").pack


def _head(small: int, n: int, codes: tuple[int, int, int], fits: int) -> bytes:
    """The header of a str, bin, array or map of `n` items/bytes: the fix form (`small`
    plus n, when `n` < `fits`; 0 when the type has none), else 8-, 16- or 32-bit
    lengths (`codes`; a 0 code: that width does not exist for the type)."""
    if n < fits:
        return bytes((small | n,))
    c8, c16, c32 = codes
    if c8 and n < 1 << 8:
        return bytes((c8, n))
    if n < 1 << 16:
        return _u16(c16, n)
    if n < 1 << 32:
        return _u32(c32, n)
    raise ValueError(f"{n} items or bytes are more than MessagePack holds")


def _int(value: int) -> bytes:
    if 0 <= value < 128:
        return bytes((value,))
    if value >= 0:
        if value < 1 << 8:
            return bytes((0xCC, value))
        if value < 1 << 16:
            return _u16(0xCD, value)
        if value < 1 << 32:
            return _u32(0xCE, value)
        if value < 1 << 64:
            return _u64(0xCF, value)
        raise OverflowError("can't serialize ints > 2**64 - 1")
    if value >= -32:
        return bytes((value & 0xFF,))
    if value >= -(1 << 7):
        return _i8(0xD0, value)
    if value >= -(1 << 15):
        return _i16(0xD1, value)
    if value >= -(1 << 31):
        return _i32(0xD2, value)
    if value >= -(1 << 63):
        return _i64(0xD3, value)
    raise OverflowError("can't serialize ints < -2**63")


def _pack(value: Any, out: list[bytes | memoryview]) -> None:
    kind = type(value)
    if kind is str:
        data = value.encode()
        out.append(_head(0xA0, len(data), (0xD9, 0xDA, 0xDB), 32))
        out.append(data)
    elif kind is float:
        out.append(_float(0xCB, value))
    elif kind is int:
        out.append(_int(value))
    elif kind is bool:
        out.append(b"\xc3" if value else b"\xc2")
    elif value is None:
        out.append(b"\xc0")
    elif kind is dict:
        out.append(_head(0x80, len(value), (0, 0xDE, 0xDF), 16))
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    elif kind is list or kind is tuple:
        out.append(_head(0x90, len(value), (0, 0xDC, 0xDD), 16))
        for item in value:
            _pack(item, out)
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = value.cast("B") if kind is memoryview and value.format != "B" else value
        out.append(_head(0, len(data), (0xC4, 0xC5, 0xC6), 0))
        out.append(data)
    # subclasses: a str or int enum's member is its value, a numpy float64 a float
    elif isinstance(value, str):
        _pack(str.__str__(value), out)
    elif isinstance(value, int):
        _pack(int(value), out)
    elif isinstance(value, float):
        _pack(float(value), out)
    else:
        raise TypeError(f"Encoding objects of type {kind.__name__} is unsupported")


def pack(value: Any) -> bytes:
    """MessagePack of None, bool, int, float, str, bytes-like, list, tuple and dict values
    (nested), byte for byte what ``msgspec.msgpack.encode`` writes for them."""
    out: list[bytes | memoryview] = []
    _pack(value, out)
    return b"".join(out)


def envelope_map(
    event_id: str, body: dict[str, Any], key: str, client_time: int, actor: str
) -> dict[str, Any]:
    """An envelope of `body` as a dict: `schemas/envelope.py`'s fields, in its order."""
    return {
        "event_id": event_id,
        "body": body,
        "key": key,
        "client_time": client_time,
        "actor": actor,
        "schema_version": SCHEMA_VERSION,
    }


def envelope(event_id: str, body: dict[str, Any], key: str, client_time: int, actor: str) -> bytes:
    """The bytes of an envelope of `body` (`envelope_map`): what the log stores and the
    gateway takes."""
    return pack(envelope_map(event_id, body, key, client_time, actor))


_UNPACK = {
    0xC4: ("bin", 1),
    0xC5: ("bin", 2),
    0xC6: ("bin", 4),
    0xD9: ("str", 1),
    0xDA: ("str", 2),
    0xDB: ("str", 4),
    0xDC: ("array", 2),
    0xDD: ("array", 4),
    0xDE: ("map", 2),
    0xDF: ("map", 4),
}
_SCALARS = {
    0xCA: Struct(">f"),
    0xCB: Struct(">d"),
    0xCC: Struct(">B"),
    0xCD: Struct(">H"),
    0xCE: Struct(">I"),
    0xCF: Struct(">Q"),
    0xD0: Struct(">b"),
    0xD1: Struct(">h"),
    0xD2: Struct(">i"),
    0xD3: Struct(">q"),
}
_MAX_DEPTH = 32


def _unpack(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    code = data[at]
    at += 1
    if code < 0x80:
        return code, at
    if code >= 0xE0:
        return code - 0x100, at
    if code == 0xC0:
        return None, at
    if code in (0xC2, 0xC3):
        return code == 0xC3, at
    scalar = _SCALARS.get(code)
    if scalar is not None:
        end = at + scalar.size
        if end > len(data):
            raise ValueError("truncated")
        return scalar.unpack_from(data, at)[0], end
    if code <= 0x8F:
        kind, n = "map", code & 0x0F
    elif code <= 0x9F:
        kind, n = "array", code & 0x0F
    elif code <= 0xBF:
        kind, n = "str", code & 0x1F
    elif code in _UNPACK:
        kind, width = _UNPACK[code]
        if at + width > len(data):
            raise ValueError("truncated")
        n = int.from_bytes(data[at : at + width], "big")
        at += width
    else:
        raise ValueError(f"unsupported MessagePack type 0x{code:02x}")
    if kind in ("str", "bin"):
        end = at + n
        if end > len(data):
            raise ValueError("truncated")
        raw = data[at:end]
        return (raw.decode() if kind == "str" else bytes(raw)), end
    if depth >= _MAX_DEPTH or n > len(data) - at:  # each item takes a byte at least
        raise ValueError("nested too deeply or truncated")
    if kind == "array":
        items: list[Any] = []
        for _ in range(n):
            item, at = _unpack(data, at, depth + 1)
            items.append(item)
        return items, at
    mapping: dict[Any, Any] = {}
    for _ in range(n):
        key, at = _unpack(data, at, depth + 1)
        mapping[key], at = _unpack(data, at, depth + 1)  # TypeError: an unhashable key
    return mapping, at


def unpack(data: bytes) -> Any:
    """The value a MessagePack document holds (nil, bool, int, float, str, bin, array and
    map; no extension types); ValueError when `data` is not exactly one such document.
    For the few answers the SDK's write path reads (`IngestAck`), without msgspec."""
    try:
        value, end = _unpack(data, 0, 0)
    except (IndexError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed MessagePack: {exc}") from None
    if end != len(data):
        raise ValueError("trailing bytes after the MessagePack document")
    return value
