"""The spool's record frame: length-prefixed, CRC32-checked, with seq, event time and kind. Pure.

Frame: `>II` (body length, CRC32 of the body), then the body: `>QqBH` (seq, event time in ms,
kind, key length), the key, the value. `parse` returns None for anything torn, corrupt or out of
sequence, which is how a crash in the middle of a write is recognised.
"""

from __future__ import annotations

import struct
import zlib

from agents.records import Record

FRAME = struct.Struct(">II")
BODY = struct.Struct(">QqBH")
HEAD = FRAME.size + BODY.size
MAX_BODY = 16 * 1024 * 1024


def encode(seq: int, time_ms: int, kind: int, key: bytes, value: bytes) -> bytes:
    return b"".join(frame_parts(seq, time_ms, kind, key, value))


def frame_parts(seq: int, time_ms: int, kind: int, key: bytes, value: bytes) -> tuple[bytes, ...]:
    """The frame in pieces (no copy of the value): header, body header, key, value."""
    head = BODY.pack(seq, time_ms, kind, len(key))
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(head)))
    return FRAME.pack(len(head) + len(key) + len(value), crc), head, key, value


def parse(buf: bytes | memoryview, offset: int, expect: int | None) -> tuple[Record, int] | None:
    """The record at `offset` and the offset after it; None if torn, corrupt or out of sequence."""
    if len(buf) - offset < HEAD:
        return None
    length, crc = FRAME.unpack_from(buf, offset)
    start = offset + FRAME.size
    if length < BODY.size or length > MAX_BODY or start + length > len(buf):
        return None
    body = bytes(buf[start:start + length])
    if zlib.crc32(body) != crc:
        return None
    seq, time_ms, kind, klen = BODY.unpack_from(body)
    if (expect is not None and seq != expect) or BODY.size + klen > length:
        return None
    key = body[BODY.size:BODY.size + klen]
    return Record(seq, time_ms, kind, key, body[BODY.size + klen:]), start + length
