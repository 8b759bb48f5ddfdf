"""Native format blocks re-framed for a client's protocol revision (clickhouse-go over HTTP). Pure.

The engine writes Native as revision 0: per block the column and row counts, then per column
its name, type and data. A client that sends `client_protocol_version=N` (clickhouse-go, the
Grafana plugin's driver) reads what a ClickHouse server writes for N
(src/Formats/NativeWriter.cpp): a BlockInfo first (field 1 is_overflows UInt8, field 2
bucket_num Int32, 0), and from revision 54454 a `has_custom_serialization` byte after each
column's type. This walks the engine's blocks (sizes from the column types: fixed-size numbers,
String, FixedString, Nullable, Array, Tuple, Map, Enum, Decimal, …) and adds those fields.
LowCardinality columns are walked part by part (SerializationLowCardinality); Dynamic, Variant
and JSON are refused.
"""

from __future__ import annotations

import re
import struct

from surplus.chserver import protocol

CUSTOM_SERIALIZATION = 54454  # DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows=0, bucket_num=-1, end

_FIXED = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "UInt16": 2, "Int16": 2, "Enum16": 2, "Date": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Decimal32": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "BFloat16": 2,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16, "Time": 4, "Time64": 8,
    "UInt256": 32, "Int256": 32, "Decimal256": 32, "Nothing": 1,
}
_CALL = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)


def _args(text: str) -> list[str]:
    """Top-level comma-separated arguments of a type, quotes and brackets respected."""
    out, depth, quote, start = [], 0, False, 0
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    out.append(text[start:].strip())
    return [a for a in out if a]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _varint(data, pos)
    return data[pos:pos + size], pos + size


def _skip(type_name: str, rows: int, data: bytes, pos: int) -> int:
    """The position after `rows` values of `type_name` starting at pos."""
    if rows == 0:
        return pos
    if type_name in _FIXED:
        return pos + rows * _FIXED[type_name]
    if type_name == "String":
        for _ in range(rows):
            size, pos = _varint(data, pos)
            pos += size
        return pos
    match = _CALL.match(type_name)
    if match is None:
        raise protocol.ServerError(48, f"Native re-framing does not know the type {type_name}")
    name, args = match.group(1), _args(match.group(2))
    if name in _FIXED:  # DateTime('UTC'), DateTime64(3, 'UTC'), Enum8('a' = 1), Decimal32(2)
        return pos + rows * _FIXED[name]
    if name == "Decimal":
        precision = int(args[0])
        size = 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32
        return pos + rows * size
    if name == "FixedString":
        return pos + rows * int(args[0])
    if name == "Nullable":
        return _skip(args[0], rows, data, pos + rows)
    if name == "Array":
        if rows:
            (total,) = struct.unpack_from("<Q", data, pos + 8 * (rows - 1))
        pos += 8 * rows
        return _skip(args[0], total, data, pos)
    if name == "Map":
        (total,) = struct.unpack_from("<Q", data, pos + 8 * (rows - 1))
        pos = _skip(args[0], total, data, pos + 8 * rows)
        return _skip(args[1], total, data, pos)
    if name == "Tuple":
        for element in args:
            parts = element.split(" ", 1)  # named tuple elements: `name Type`
            inner = parts[1] if len(parts) == 2 and not _CALL.match(element) and parts[0].isidentifier() \
                and parts[1][:1].isupper() else element
            pos = _skip(inner, rows, data, pos)
        return pos
    if name == "LowCardinality":  # SerializationLowCardinality: version, then dictionary parts
        inner = args[0]
        nested = _CALL.match(inner)
        keys_type = _args(nested.group(2))[0] if nested and nested.group(1) == "Nullable" else inner
        pos += 8  # key serialization version
        left = rows
        while left > 0:
            (flags,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if flags & (1 << 9):  # HasAdditionalKeysBit
                (keys,) = struct.unpack_from("<Q", data, pos)
                pos = _skip(keys_type, keys, data, pos + 8)
            (count,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + count * (1 << (flags & 0xFF))
            left -= count
        return pos
    if name == "SimpleAggregateFunction":
        return _skip(args[-1], rows, data, pos)
    raise protocol.ServerError(48, f"Native re-framing does not support the type {type_name}")


def reframe(data: bytes, revision: int) -> bytes:
    """The engine's Native blocks (revision 0) as a server writes them for `revision`."""
    if revision <= 0:
        return data
    out = bytearray()
    pos = 0
    while pos < len(data):
        out += BLOCK_INFO
        start = pos
        columns, pos = _varint(data, pos)
        rows, pos = _varint(data, pos)
        out += data[start:pos]
        for _ in range(columns):
            head = pos
            _, pos = _string(data, pos)
            type_bytes, pos = _string(data, pos)
            out += data[head:pos]
            if revision >= CUSTOM_SERIALIZATION:
                out += b"\x00"
            end = _skip(type_bytes.decode(), rows, data, pos)
            out += data[pos:end]
            pos = end
    return bytes(out)
