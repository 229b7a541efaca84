"""A metric batch as the embedded log stores it: its columns apart, each made compressible.

A `MetricsLogged` payload is mostly four raw columns (26 bytes a point). Compressed as
one blob they shrink poorly on real curves (~10 bytes a point): the keys' values are
interleaved, and zstd's matches rarely span a float's noisy low bytes. Stored apart,
steps and times as differences, values grouped by key and split into byte planes (as
Parquet's BYTE_STREAM_SPLIT does), the same batch takes ~7 bytes a point (byte planes
of steps and times would save ~0.1 more and cost as much again to undo).

The transform is exact and self-describing: the stored form says where each column sat
in the payload, and `unpack` splices the restored columns back into the untouched rest,
so the bytes read are the bytes appended. The payload is located, never re-encoded: a
small MessagePack walker finds the body's column fields; any other payload (another
event type, columns in an unexpected order) is not packed here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from deardiary.schemas.events import MetricsLogged

if TYPE_CHECKING:
    import numpy as np

_TAG = MetricsLogged.__struct_config__.tag
_TAG_FIELD = str(MetricsLogged.__struct_config__.tag_field).encode()
_COLUMNS = (b"key_index", b"steps", b"values", b"times")  # in payload and stored order
_WIDTHS = (2, 8, 8, 8)
# the payload's size; per column its offset, size and stored size; the rest's stored size
_HEADER = struct.Struct("<Q" + "QQQ" * len(_COLUMNS) + "Q")

Compress = Callable[["bytes | memoryview | np.ndarray"], bytes]
Decompress = Callable[[memoryview, int], bytes]


def pack(payload: bytes, compress: Compress) -> bytes | None:
    """The stored form of a metric batch, or None when `payload` is not one."""
    ranges = _column_ranges(payload)
    if ranges is None:
        return None
    import numpy as np

    (ki_at, ki_size), steps, (values_at, values_size), times = ranges
    view = memoryview(payload)
    key_index = np.frombuffer(payload, "<u2", ki_size // 2, ki_at)
    values = np.frombuffer(payload, "<u8", values_size // 8, values_at)
    # views and arrays straight into the codec: the 0.5 MB of a batch is not copied again
    transformed: list[memoryview | np.ndarray] = [
        view[ki_at : ki_at + ki_size],
        _differences(payload, steps),
        _planes(values[np.argsort(key_index, kind="stable")]),
        _differences(payload, times),
    ]
    rest, at = [], 0
    for start, size in ranges:
        rest.append(view[at:start])
        at = start + size
    rest.append(view[at:])
    stored = [compress(c) for c in transformed] + [compress(b"".join(rest))]
    fields = [len(payload)]
    for (start, size), part in zip(ranges, stored, strict=False):
        fields += [start, size, len(part)]
    fields.append(len(stored[-1]))
    return _HEADER.pack(*fields) + b"".join(stored)


def unpack(data: bytes, decompress: Decompress) -> bytes:
    """The payload `pack` was given. Raises ValueError (or the codec's own error) when
    `data` is not a whole, consistent stored form."""
    import numpy as np

    fields = _HEADER.unpack_from(data)
    total = fields[0]
    ranges = [(fields[1 + 3 * i], fields[2 + 3 * i]) for i in range(len(_COLUMNS))]
    stored_sizes = [fields[3 + 3 * i] for i in range(len(_COLUMNS))] + [fields[-1]]
    raw_sizes = [size for _, size in ranges] + [total - sum(size for _, size in ranges)]
    if not _consistent(ranges, total) or _HEADER.size + sum(stored_sizes) != len(data):
        raise ValueError("the stored metric batch is damaged")
    parts, at, view = [], _HEADER.size, memoryview(data)
    for stored_size, raw_size in zip(stored_sizes, raw_sizes, strict=True):
        parts.append(decompress(view[at : at + stored_size], raw_size))
        at += stored_size
    if any(len(p) != size for p, size in zip(parts, raw_sizes, strict=True)):
        raise ValueError("the stored metric batch is damaged")
    key_index = np.frombuffer(parts[0], "<u2")
    values = np.empty(len(key_index), "<u8")
    values[np.argsort(key_index, kind="stable")] = _unplanes(parts[2], "<u8")
    columns = [
        memoryview(parts[0]),
        np.cumsum(np.frombuffer(parts[1], "<i8"), dtype="<i8").data,
        values.data,
        np.cumsum(np.frombuffer(parts[3], "<i8"), dtype="<i8").data,
    ]
    rest, taken, written = memoryview(parts[4]), 0, 0
    out: list[memoryview] = []
    for (start, size), column in zip(ranges, columns, strict=True):
        out += [rest[taken : taken + start - written], column]
        taken += start - written
        written = start + size
    out.append(rest[taken:])
    payload = b"".join(out)
    if _column_ranges(payload) != ranges:  # a damaged header that still added up
        raise ValueError("the stored metric batch is damaged")
    return payload


def _consistent(ranges: list[tuple[int, int]], total: int) -> bool:
    """Columns in order, apart, inside the payload, each of the same number of points."""
    points, at = ranges[0][1] // _WIDTHS[0], 0
    for (start, size), width in zip(ranges, _WIDTHS, strict=True):
        if start < at or size != points * width:
            return False
        at = start + size
    return at <= total


def _ints(payload: bytes, where: tuple[int, int]) -> np.ndarray:
    import numpy as np

    return np.frombuffer(payload, "<i8", where[1] // 8, where[0])


def _differences(payload: bytes, where: tuple[int, int]) -> np.ndarray:
    """Each integer minus the one before (the first minus 0), wrapping as int64 does."""
    import numpy as np

    ints = _ints(payload, where)
    out = np.empty_like(ints)
    out[:1] = ints[:1]
    np.subtract(ints[1:], ints[:-1], out=out[1:])
    return out


def _planes(column: np.ndarray) -> np.ndarray:
    """Byte 0 of every element, then byte 1, ...: alike bytes side by side."""
    import numpy as np

    return np.ascontiguousarray(column.view("u1").reshape(-1, column.itemsize).T)


def _unplanes(data: bytes, dtype: str) -> np.ndarray:
    import numpy as np

    width = np.dtype(dtype).itemsize
    return np.frombuffer(data, "u1").reshape(width, -1).T.copy().view(dtype).ravel()


# -- finding the columns: a MessagePack walker over the envelope and its body ------------


def _column_ranges(payload: bytes) -> list[tuple[int, int]] | None:
    """(offset, size) of each column's bytes in a metrics_logged envelope; None for any
    other payload, or when the columns are not in their usual order."""
    try:
        body = _map_values(payload, 0).get(b"body")
        if body is None:
            return None
        fields = _map_values(payload, body)
        if _str(payload, fields.get(_TAG_FIELD)) != _TAG:
            return None
        ranges = [_bin(payload, fields[name]) for name in _COLUMNS]
    except (IndexError, KeyError, ValueError, struct.error):
        return None
    return ranges if _consistent(ranges, len(payload)) else None


def _map_values(buf: bytes, at: int) -> dict[bytes, int]:
    """A map's string keys and where each value starts."""
    count, at = _container(buf, at, 0x80, 0xDE)
    values: dict[bytes, int] = {}
    for _ in range(count):
        key_at = at
        at = _skip(buf, at)
        values[_str_bytes(buf, key_at)] = at
        at = _skip(buf, at)
    return values


def _container(buf: bytes, at: int, fix: int, wide: int) -> tuple[int, int]:
    """(count, first item) of a map (fix 0x80, wide 0xde) or array (0x90, 0xdc)."""
    head = buf[at]
    if fix <= head <= fix + 0x0F:
        return head - fix, at + 1
    if head == wide:
        return struct.unpack_from(">H", buf, at + 1)[0], at + 3
    if head == wide + 1:
        return struct.unpack_from(">I", buf, at + 1)[0], at + 5
    raise ValueError("not the container expected")


def _str_bytes(buf: bytes, at: int) -> bytes:
    head = buf[at]
    if 0xA0 <= head <= 0xBF:
        return buf[at + 1 : at + 1 + head - 0xA0]
    width = {0xD9: 1, 0xDA: 2, 0xDB: 4}[head]
    size = int.from_bytes(buf[at + 1 : at + 1 + width], "big")
    return buf[at + 1 + width : at + 1 + width + size]


def _str(buf: bytes, at: int | None) -> str | None:
    return None if at is None else _str_bytes(buf, at).decode()


def _bin(buf: bytes, at: int) -> tuple[int, int]:
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}[buf[at]]
    size = int.from_bytes(buf[at + 1 : at + 1 + width], "big")
    if at + 1 + width + size > len(buf):
        raise ValueError("a bin past the end")
    return at + 1 + width, size


# bytes after the head byte, for heads of a fixed size
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # then that many bytes
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}  # a size, a type byte, then the data


def _skip(buf: bytes, at: int) -> int:
    """Where the value at `at` ends (nested maps and arrays included), without recursion."""
    pending = 1
    while pending:
        pending -= 1
        head = buf[at]
        if head <= 0x7F or head >= 0xE0:
            at += 1
        elif head <= 0x8F or head in (0xDE, 0xDF):
            count, at = _container(buf, at, 0x80, 0xDE)
            pending += 2 * count
        elif head <= 0x9F or head in (0xDC, 0xDD):
            count, at = _container(buf, at, 0x90, 0xDC)
            pending += count
        elif head <= 0xBF:
            at += 1 + head - 0xA0
        elif head in _FIXED:
            at += 1 + _FIXED[head]
        elif head in _SIZED:
            width = _SIZED[head]
            at += 1 + width + int.from_bytes(buf[at + 1 : at + 1 + width], "big")
        elif head in _EXT:
            width = _EXT[head]
            at += 2 + width + int.from_bytes(buf[at + 1 : at + 1 + width], "big")
        else:
            raise ValueError(f"byte 0x{head:02x} starts no MessagePack value")
        if at > len(buf):
            raise ValueError("a value past the end")
    return at
