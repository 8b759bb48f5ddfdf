"""An append-only log of CRC-framed records in segment files, with an ack cursor on disk. I/O (files).

Records are framed by agents.frames (length, CRC32, seq, time, kind, key, value). Segments are
`<first seq:020d>.seg`; the file `cursor` holds the lowest seq
not yet acknowledged (every record below it is delivered or dropped). Opening scans every segment:
a torn or corrupt record ends its segment's valid data (the last segment is truncated there), so
a crash mid-write costs at most the record being written, never the log.

A send position (`read`) runs ahead of the ack cursor; `rewind()` moves it back so that every
unacknowledged record is read again, in order, with the same bytes.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agents.frames import HEAD, frame_parts, parse
from agents.records import Record

log = logging.getLogger("agents.spool")

FsyncPolicy = Literal["always", "batch", "never"]
READ_CHUNK = 1 << 20
TAIL_MAX = 50_000  # records kept in memory for the sender when it is caught up
MARK_EVERY = 64  # a (seq, offset) mark every this many records: seeks read at most that many
Item = tuple[int, int, bytes, bytes]  # kind, time_ms, key, value


@dataclass(slots=True)
class Segment:
    first: int
    last: int  # first - 1 when empty
    path: Path
    nbytes: int
    marks: list[tuple[int, int]] = field(default_factory=list)  # (seq, offset) every MARK_EVERY

    def offset_near(self, seq: int) -> int:
        """The offset of a record at or before `seq` (to read forward from)."""
        i = bisect.bisect_right(self.marks, (seq, 1 << 62)) - 1
        return self.marks[i][1] if i >= 0 else 0

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class SegmentLog:
    """One directory of segments: append, read ahead, acknowledge, drop whole segments."""

    def __init__(self, directory: Path, *, segment_bytes: int = 4 << 20,
                 fsync: FsyncPolicy = "batch", fsync_interval_s: float = 0.2,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._mono = monotonic
        self.segments: list[Segment] = []
        self.cursor = 0
        self.next_seq = 0
        self.torn = 0  # segments whose valid data ended early (torn or corrupt record)
        self._acked: set[int] = set()
        self._send = 0
        self._rseg: Segment | None = None
        self._roff = 0
        self._tail: deque[Record] = deque()
        self._tail_ok = True
        self._file: int | None = None  # fd of the active segment
        self._dirty = False
        self._synced_at = 0.0
        self._saved_cursor = -1
        self._oldest: tuple[int, int, int | None] = (-1, -1, None)  # (cursor, next seq, time)
        self._open()

    # -- open / scan ---------------------------------------------------------------------------

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError, ValueError):
            self.cursor = int((self.dir / "cursor").read_text().strip())
        self._saved_cursor = self.cursor
        paths = sorted(self.dir.glob("*.seg"))
        for i, path in enumerate(paths):
            seg = self._scan(path, last_file=i == len(paths) - 1)
            if seg.count <= 0 or seg.last < self.cursor:
                path.unlink()
                continue
            self.segments.append(seg)
        self.next_seq = max(self.cursor, self.segments[-1].last + 1 if self.segments else 0)
        self._advance()
        self._send = self.cursor
        self._tail_ok = not self.segments

    def _scan(self, path: Path, *, last_file: bool) -> Segment:
        first = int(path.stem)
        data = path.read_bytes()
        offset, expect = 0, first
        marks: list[tuple[int, int]] = []
        while offset < len(data):
            parsed = parse(data, offset, expect)
            if parsed is None:
                break
            if (expect - first) % MARK_EVERY == 0:
                marks.append((expect, offset))
            offset, expect = parsed[1], expect + 1
        if offset < len(data):
            self.torn += 1
            log.warning("spool %s: torn or corrupt record at byte %d of %s; %d bytes skipped",
                        self.dir.name, offset, path.name, len(data) - offset)
            if last_file:
                os.truncate(path, offset)
        return Segment(first, expect - 1, path, offset, marks)

    # -- appending -----------------------------------------------------------------------------

    def append_many(self, items: Sequence[Item]) -> list[Record]:
        """Write records (one write per segment) and return them with their seqs."""
        records: list[Record] = []
        if not items:
            return records
        if self._send == self.next_seq:  # caught up: the tail is exactly what is unsent
            self._tail.clear()
            self._tail_ok = True
        chunks: list[bytes] = []
        seg = self._active()
        size, limit, seq = 0, self.segment_bytes - seg.nbytes, self.next_seq
        for kind, time_ms, key, value in items:
            if size >= limit and (chunks or seg.count > 0):
                self._write(chunks, size)
                chunks, size = [], 0
                seg = self._roll()
                limit = self.segment_bytes
            if (seq - seg.first) % MARK_EVERY == 0:
                seg.marks.append((seq, seg.nbytes + size))
            chunks += frame_parts(seq, time_ms, kind, key, value)
            size += HEAD + len(key) + len(value)
            records.append(Record(seq, time_ms, kind, key, value))
            seg.last = seq
            seq += 1
            self.next_seq = seq
        self._write(chunks, size)
        if self._tail_ok and len(self._tail) + len(records) <= TAIL_MAX:
            self._tail.extend(records)
        else:
            self._tail.clear()
            self._tail_ok = False
        self._maybe_sync(force=self.fsync == "always")
        return records

    def _active(self) -> Segment:
        if not self.segments or self._file is None:
            return self._roll()
        return self.segments[-1]

    def _roll(self) -> Segment:
        """Close the active segment and start the next one at `next_seq`."""
        if self._file is not None:
            self._maybe_sync(force=self.fsync != "never")
            os.close(self._file)
        seg = Segment(self.next_seq, self.next_seq - 1, self.dir / f"{self.next_seq:020d}.seg", 0)
        self._file = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.segments.append(seg)
        if self.fsync != "never":
            _fsync_dir(self.dir)
        return seg

    def _write(self, chunks: list[bytes], size: int) -> None:
        if not chunks or self._file is None:
            return
        data = b"".join(chunks)
        view = memoryview(data)
        while view:
            view = view[os.write(self._file, view):]
        self.segments[-1].nbytes += size
        self._dirty = True

    def _maybe_sync(self, *, force: bool = False) -> None:
        if not self._dirty or self._file is None or self.fsync == "never":
            return
        now = self._mono()
        if force or now - self._synced_at >= self.fsync_interval_s:
            os.fsync(self._file)
            self._dirty = False
            self._synced_at = now

    def tick(self) -> None:
        """Housekeeping between batches: the interval fsync of the `batch` policy."""
        self._maybe_sync()

    # -- reading (the send position) -----------------------------------------------------------

    def read(self, max_records: int) -> list[Record]:
        """Up to `max_records` records from the send position on, in seq order."""
        out: list[Record] = []
        while len(out) < max_records and self._send < self.next_seq:
            if self._tail_ok and self._tail and self._tail[0].seq == self._send:
                rec = self._tail.popleft()
                out.append(rec)
                self._send = rec.seq + 1
                self._rseg = None
                continue
            if not self._read_disk(out, max_records):
                break
        if self._send >= self.next_seq:
            self._tail.clear()
            self._tail_ok = True
        return out

    def _read_disk(self, out: list[Record], max_records: int) -> bool:
        seg = self._segment_at(self._send)
        if seg is None:
            self._send = self.next_seq
            return False
        self._send = max(self._send, seg.first)
        if self._rseg is not seg:
            self._rseg, self._roff = seg, seg.offset_near(self._send)
        remaining = max(0, seg.nbytes - self._roff)
        with open(seg.path, "rb") as handle:
            handle.seek(self._roff)
            data = handle.read(min(remaining, READ_CHUNK))
            if remaining > len(data) and parse(data, 0, None) is None:
                data += handle.read(remaining - len(data))  # a record larger than the chunk
        offset = 0
        while len(out) < max_records:
            parsed = parse(data, offset, None)
            if parsed is None:
                break
            rec, offset = parsed
            if rec.seq >= self._send:
                if rec.seq not in self._acked:  # acked out of order before a rewind
                    out.append(rec)
                self._send = rec.seq + 1
        self._roff += offset
        if offset == 0 and self._send <= seg.last:  # unreadable rest: skip this segment
            log.warning("spool %s: cannot read %s from byte %d; skipping to the next segment",
                        self.dir.name, seg.path.name, self._roff)
            self._send = seg.last + 1
        if self._send > seg.last:
            self._rseg = None
        return True

    def _segment_at(self, seq: int) -> Segment | None:
        """The segment holding `seq`, or the first one after it; None past the end."""
        i = bisect.bisect_right([s.last for s in self.segments], seq - 1)
        return self.segments[i] if i < len(self.segments) else None

    def rewind(self) -> None:
        """Read again from the ack cursor: every unacknowledged record is sent once more."""
        self._send = self.cursor
        self._rseg = None
        self._tail.clear()
        self._tail_ok = self._send >= self.next_seq

    @property
    def unsent(self) -> int:
        return max(0, self.next_seq - self._send)

    # -- acknowledging -------------------------------------------------------------------------

    def ack(self, seq: int) -> None:
        """Record `seq` as delivered; advance the cursor and delete fully delivered segments."""
        if seq < self.cursor or seq >= self.next_seq:
            return
        self._acked.add(seq)
        if seq == self.cursor:
            self._advance()

    def ack_many(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        lo, hi = self.cursor, self.next_seq
        self._acked.update(s for s in seqs if lo <= s < hi)
        if self.cursor in self._acked:
            self._advance()

    def _advance(self) -> None:
        acked = self._acked
        while True:
            while self.cursor in acked:
                acked.discard(self.cursor)
                self.cursor += 1
            head = self.segments[0] if self.segments else None
            if head is not None and head.first <= self.cursor <= head.last:
                break  # the common case: the cursor is inside the oldest segment
            seg = self._segment_at(self.cursor)
            target = seg.first if seg is not None else self.next_seq
            if target <= self.cursor:
                break
            self.cursor = target
            acked = self._acked = {s for s in acked if s >= target}
        while len(self.segments) > 1 and self.segments[0].last < self.cursor:
            self._delete(self.segments.pop(0))

    def _delete(self, seg: Segment) -> None:
        if self._rseg is seg:
            self._rseg = None
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()

    def save_cursor(self) -> None:
        """Persist the ack cursor (atomic rename) if it moved since the last save."""
        if self.cursor == self._saved_cursor:
            return
        tmp = self.dir / "cursor.tmp"
        with open(tmp, "w") as handle:
            handle.write(f"{self.cursor}\n")
            handle.flush()
            if self.fsync != "never":
                os.fsync(handle.fileno())
        os.replace(tmp, self.dir / "cursor")
        self._saved_cursor = self.cursor

    # -- overflow ------------------------------------------------------------------------------

    def drop_oldest(self) -> int:
        """Delete the oldest segment (the active one too); return its undelivered record count."""
        if not self.segments:
            return 0
        seg = self.segments[0]
        undelivered = sum(1 for s in range(max(seg.first, self.cursor), seg.last + 1)
                          if s not in self._acked)
        if len(self.segments) == 1 and self._file is not None:
            os.close(self._file)
            self._file = None
        self.segments.pop(0)
        self._delete(seg)
        self._tail = deque(r for r in self._tail if r.seq > seg.last)
        self._send = max(self._send, seg.last + 1)
        self.cursor = max(self.cursor, seg.last + 1)
        self._acked = {s for s in self._acked if s >= self.cursor}
        self._advance()
        self.save_cursor()
        return undelivered

    # -- figures -------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    @property
    def backlog(self) -> int:
        """Records neither delivered nor dropped."""
        pending = sum(max(0, s.last - max(s.first, self.cursor) + 1) for s in self.segments)
        return pending - len(self._acked)

    def oldest_time_ms(self) -> int | None:
        """Event time of the oldest undelivered record (read from disk), or None."""
        if self._oldest[:2] == (self.cursor, self.next_seq):
            return self._oldest[2]
        seg = self._segment_at(self.cursor)
        if seg is None:
            return None
        start = seg.offset_near(self.cursor)
        with open(seg.path, "rb") as handle:
            handle.seek(start)
            data = handle.read(seg.nbytes - start)
        offset, found = 0, None
        while (parsed := parse(data, offset, None)) is not None:
            rec, offset = parsed
            if rec.seq >= self.cursor and rec.seq not in self._acked:
                found = rec.time_ms
                break
        self._oldest = (self.cursor, self.next_seq, found)
        return found

    def close(self) -> None:
        if self._file is not None:
            self._maybe_sync(force=True)
            os.close(self._file)
            self._file = None
        self.save_cursor()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

