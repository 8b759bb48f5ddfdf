"""The agent's disk spool: every event is on disk before Kafka sees it, until delivered. I/O (files).

Two segment logs under one directory and one byte bound: `jobs/` (job metering) and
`telemetry/` (registry, capacity, power, heartbeat). Overflow policy `drop_oldest_telemetry`:
when an append would pass `max_bytes`, whole telemetry segments are deleted oldest first and
their undelivered events counted as dropped, by kind; job metering is never dropped. If only
job metering is left and the bound is still hit, new telemetry is refused (and counted) rather
than any job event, and job events are still written, past the bound (counted as
`jobs_over_bound`): losing metering would lose money, so that is the operator's disk to size.

fsync policy (per log): `always` fsyncs every append before the events go to Kafka; `batch`
(default) fsyncs at most every `fsync_interval_s` and at close, so a power cut loses at most that
interval (a killed process loses nothing: bytes are written before they are sent); `never`
leaves it to the OS.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents.frames import HEAD, parse
from agents.records import JOB, KIND_NAMES, Record
from agents.segments import FsyncPolicy, Item, SegmentLog
from surplus.paths import make_dir

log = logging.getLogger("agents.spool")


class SpoolBusy(Exception):
    """Another process holds this spool directory."""


@dataclass
class SpoolCounts:
    """What the overflow policy did since the spool was opened."""

    dropped: Counter[str] = field(default_factory=Counter)  # undelivered telemetry deleted, by kind
    refused: Counter[str] = field(default_factory=Counter)  # telemetry not spooled: bound hit
    jobs_over_bound: int = 0  # job events written past the bound (never dropped)


@dataclass(frozen=True)
class Appended:
    records: list[Record]
    refused: int


class Spool:
    """Telemetry and job metering on disk under one byte bound, replayed in order after a restart."""

    def __init__(self, path: Path, *, max_bytes: int = 256 << 20, segment_bytes: int = 4 << 20,
                 fsync: FsyncPolicy = "batch", fsync_interval_s: float = 0.2) -> None:
        self.path = Path(path)
        make_dir(self.path, "the spool directory")  # never its missing parents
        self._lock = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise SpoolBusy(f"spool {self.path} is in use by another agent") from None
        self.max_bytes = max_bytes
        seg = max(4096, min(segment_bytes, max_bytes // 8))
        self.jobs = SegmentLog(self.path / "jobs", segment_bytes=seg, fsync=fsync,
                               fsync_interval_s=fsync_interval_s)
        self.telemetry = SegmentLog(self.path / "telemetry", segment_bytes=seg, fsync=fsync,
                                    fsync_interval_s=fsync_interval_s)
        self.counts = SpoolCounts()

    def _log(self, kind: int) -> SegmentLog:
        return self.jobs if kind == JOB else self.telemetry

    @property
    def torn(self) -> int:
        """Segments whose torn or corrupt tail was skipped when the spool was opened."""
        return self.jobs.torn + self.telemetry.torn

    # -- writing -------------------------------------------------------------------------------

    def append(self, items: Sequence[Item]) -> Appended:
        """Spool events (kind, time_ms, key, value), applying the overflow policy first."""
        jobs = [i for i in items if i[0] == JOB]
        tele = [i for i in items if i[0] != JOB]
        need = sum(HEAD + len(i[2]) + len(i[3]) for i in items)
        while self.nbytes + need > self.max_bytes and self.telemetry.segments:
            self._drop_oldest_telemetry()
        room = self.max_bytes - self.nbytes - sum(HEAD + len(i[2]) + len(i[3]) for i in jobs)
        kept: list[Item] = []
        for item in tele:
            size = HEAD + len(item[2]) + len(item[3])
            if size <= room:
                kept.append(item)
                room -= size
            else:
                self.counts.refused[KIND_NAMES[item[0]]] += 1
                _now_and_then(sum(self.counts.refused.values()),
                              "spool full of job metering (%d bytes): %d telemetry events refused "
                              "so far", self.max_bytes)
        if room < 0:
            self.counts.jobs_over_bound += len(jobs)
            _now_and_then(self.counts.jobs_over_bound,
                          "spool past its bound of %d bytes with job metering only: %d job events "
                          "kept anyway (never dropped)", self.max_bytes)
        records = self.jobs.append_many(jobs) + self.telemetry.append_many(kept)
        return Appended(records, len(tele) - len(kept))

    def _drop_oldest_telemetry(self) -> None:
        seg = self.telemetry.segments[0]
        kinds: Counter[str] = Counter()
        data = seg.path.read_bytes()[:seg.nbytes]
        offset = 0
        while (parsed := parse(data, offset, None)) is not None:
            rec, offset = parsed
            if rec.seq >= self.telemetry.cursor:
                kinds[KIND_NAMES[rec.kind]] += 1
        undelivered = self.telemetry.drop_oldest()
        if undelivered:
            # acked-but-above-cursor records are few; scale the per-kind counts to the exact total
            total = sum(kinds.values()) or 1
            for name, n in kinds.items():
                self.counts.dropped[name] += round(n * undelivered / total)
            log.warning("spool full (%d bytes): dropped %d undelivered telemetry events (%s)",
                        self.max_bytes, undelivered, ", ".join(f"{k} {v}" for k, v in kinds.items()))

    # -- reading and acknowledging -------------------------------------------------------------

    def read(self, max_records: int) -> list[Record]:
        """Up to `max_records` unsent records: half from each log, in order within each."""
        jobs = self.jobs.read(max(1, max_records // 2))
        tele = self.telemetry.read(max_records - len(jobs))
        if len(jobs) + len(tele) < max_records:
            jobs += self.jobs.read(max_records - len(jobs) - len(tele))
        return jobs + tele

    def ack(self, kind: int, seq: int) -> None:
        self._log(kind).ack(seq)

    def ack_many(self, records: Sequence[Record]) -> None:
        """Acknowledge delivered records (any order) in one pass per log."""
        self.jobs.ack_many([r.seq for r in records if r.kind == JOB])
        self.telemetry.ack_many([r.seq for r in records if r.kind != JOB])

    def rewind(self) -> None:
        """Send every undelivered record again, in order (after a producer failure)."""
        self.jobs.rewind()
        self.telemetry.rewind()

    @property
    def unsent(self) -> int:
        return self.jobs.unsent + self.telemetry.unsent

    # -- figures and housekeeping --------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        return self.jobs.nbytes + self.telemetry.nbytes

    @property
    def backlog(self) -> int:
        """Events spooled and not yet delivered."""
        return self.jobs.backlog + self.telemetry.backlog

    def oldest_time_ms(self) -> int | None:
        times = [t for t in (self.jobs.oldest_time_ms(), self.telemetry.oldest_time_ms())
                 if t is not None]
        return min(times) if times else None

    def tick(self) -> None:
        self.jobs.tick()
        self.telemetry.tick()

    def save_cursor(self) -> None:
        self.jobs.save_cursor()
        self.telemetry.save_cursor()

    def close(self) -> None:
        self.jobs.close()
        self.telemetry.close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the flock
            self._lock = -1


@dataclass(frozen=True)
class Peek:
    """A segment log as seen from outside (another process may be writing it)."""

    backlog: int  # records at or above the saved cursor
    oldest_time_ms: int | None  # of the first such record
    nbytes: int


def peek(directory: Path) -> Peek:
    """Read a segment log without opening it for writing: no lock taken, nothing truncated.

    The saved cursor lags the live one by at most the agent's cursor save interval, so the
    backlog can be a little high, never low.
    """
    try:
        cursor = int((directory / "cursor").read_text().strip())
    except (OSError, ValueError):
        cursor = 0
    backlog, oldest, nbytes = 0, None, 0
    for path in sorted(directory.glob("*.seg")):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # deleted while we looked: delivered
        nbytes += len(data)
        offset = 0
        while (parsed := parse(data, offset, None)) is not None:
            rec, offset = parsed
            if rec.seq >= cursor:
                backlog += 1
                if oldest is None:
                    oldest = rec.time_ms
    return Peek(backlog, oldest, nbytes)


def peek_spool(path: Path) -> tuple[int, int | None, int]:
    """(backlog, oldest unsent event time in ms, bytes) of a spool another process may hold."""
    jobs, tele = peek(Path(path) / "jobs"), peek(Path(path) / "telemetry")
    times = [t for t in (jobs.oldest_time_ms, tele.oldest_time_ms) if t is not None]
    return jobs.backlog + tele.backlog, min(times) if times else None, jobs.nbytes + tele.nbytes


def _now_and_then(count: int, message: str, bound: int) -> None:
    """Log at the 1st, 10th, 100th... occurrence: a full spool must not flood the log."""
    if count > 0 and 10 ** int(math.log10(count)) == count:
        log.warning(message, bound, count)
