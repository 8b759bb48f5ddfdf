"""One batch of Kafka records -> rows per table, dead letters and counts. Pure.

The worker hands in raw records (bytes, positions) and `now`; decode and normalise run here;
the result says what to write where. Nothing here awaits, reads the clock or logs payloads.
Which table an accepted event goes to, and whether it passes the ledger first, is its type's
entry in schemas/registry.py: a registered type is dispatched with no code here.
"""

from __future__ import annotations

from collections import ChainMap, Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from schemas import registry
from schemas.catalogue import Catalogue
from schemas.decode import MAX_BYTES, Verifier, decode
from schemas.events import Event, JobEvent
from schemas.fastdecode import FastEvent, decode_fast
from schemas.prices import PriceBook
from schemas.reasons import Reason, Reject
from streams.ledger import LEDGER_COLUMNS, JobKey, JobState, apply, job_key

PAYLOAD_KEEP_BYTES = 4096
# What the dead-letter topic keeps of a message (SPEC §3): the value whole up to the 64 KiB that
# `too_large` allows, else its first 64 KiB with an `original_size` header; keys are ids (at most
# 63 characters when valid), so a longer one is cut the same way. This bounds every forwarded
# record well under the worker producer's request limit, whatever the broker accepted.
FORWARD_VALUE_BYTES = MAX_BYTES
FORWARD_KEY_BYTES = 1024

DEAD_LETTER_COLUMNS = ("received_at", "topic", "partition", "offset", "reason", "detail", "payload")
# every table's column order (rows are tuples, every column is written): the raw tables of the
# registry (a live view: registered types are in it), the dead letters and the ledger
COLUMNS: Mapping[str, tuple[str, ...]] = ChainMap(
    registry.COLUMNS, {"dead_letters": DEAD_LETTER_COLUMNS, "ledger_entries": LEDGER_COLUMNS}
)


def tables() -> tuple[str, ...]:
    """Tables in the order they are written: dead letters first, the raw tables of the registry
    (ClickHouse derives pool_minutes from capacity_samples, migration 009), the ledger (which is
    also the per-job state a restarted worker resumes from) last."""
    return ("dead_letters", *registry.tables(), "ledger_entries")


TABLES = tables()  # the built-in types' tables; `tables()` follows the registry


class Record(NamedTuple):
    """A Kafka message as the worker received it (a tuple: one C allocation per record on the
    hot path, where a frozen dataclass's `__init__` cost a profile's 7 %)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    detail: str

    def row(self, received_at: datetime) -> tuple[Any, ...]:
        """The dead_letters row, in DEAD_LETTER_COLUMNS order."""
        r = self.record
        return (received_at, r.topic, r.partition, r.offset, self.reason.value, self.detail,
                r.value[:PAYLOAD_KEEP_BYTES])

    @property
    def key(self) -> bytes | None:
        """The key forwarded to the dead-letter topic (at most FORWARD_KEY_BYTES)."""
        key = self.record.key
        return key if key is None or len(key) <= FORWARD_KEY_BYTES else key[:FORWARD_KEY_BYTES]

    @property
    def value(self) -> bytes:
        """The value forwarded to the dead-letter topic: whole, or its first FORWARD_VALUE_BYTES."""
        value = self.record.value
        return value if len(value) <= FORWARD_VALUE_BYTES else value[:FORWARD_VALUE_BYTES]

    def headers(self) -> list[tuple[str, bytes]]:
        """`reason`, `detail` (at most 200 bytes), `source`, and `original_size` when cut (SPEC §3)."""
        headers = [
            ("reason", self.reason.value.encode()),
            ("detail", self.detail.encode("utf-8", "replace")[:200]),
            ("source", self.record.position.encode()),
        ]
        if len(self.record.value) > FORWARD_VALUE_BYTES:
            headers.append(("original_size", str(len(self.record.value)).encode()))
        if self.record.key is not None and len(self.record.key) > FORWARD_KEY_BYTES:
            headers.append(("original_key_size", str(len(self.record.key)).encode()))
        return headers


@dataclass(slots=True)
class Batch:
    tuples: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in tables()})
    dead: list[DeadLetter] = field(default_factory=list)
    jobs: list[tuple[Record, JobEvent]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unpriced: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dc_id, device_model)

    def reject(self, record: Record, why: Reject, now: datetime) -> None:
        letter = DeadLetter(record, why.reason, why.detail)
        self.dead.append(letter)
        self.tuples["dead_letters"].append(letter.row(now))
        self.rejected[why.reason.value] += 1

    @property
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """The rows as dicts by column name (for observers such as the alert rules; not the hot path)."""
        return {table: [dict(zip(COLUMNS[table], row, strict=True)) for row in rows]
                for table, rows in self.tuples.items()}

    @property
    def job_keys(self) -> set[JobKey]:
        return {job_key(event) for _, event in self.jobs}


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def process(
    records: Iterable[Record],
    *,
    now: datetime,
    catalogue: Catalogue,
    verifier: Verifier | None = None,
) -> Batch:
    """Decode and normalise every record; job events are held for the ledger stage."""
    batch = Batch()
    rows = batch.tuples
    types = registry.TYPES
    received = epoch_ms(now)  # DateTime64(3) ticks: converted once per batch, not per row
    signed = verifier is not None
    for record in records:
        # the fast path answers for the common valid event (schemas/fastdecode.py); anything
        # else, and every signed event, takes decode's full path, which names the reason
        outcome: Event | FastEvent | None = (
            None if signed else decode_fast(record.value, record.key, record.headers, now, catalogue))
        if outcome is None:
            decoded = decode(
                record.value,
                now=now,
                key=record.key,
                headers=record.headers,  # the content mode (structured or binary) and the signature
                verifier=verifier,
                catalogue=catalogue,
            )
            if isinstance(decoded, Reject):
                batch.reject(record, decoded, now)
                continue
            outcome = decoded
        batch.accepted[outcome.type] += 1
        kind = types[outcome.type]
        if kind.ledger:
            batch.jobs.append((record, outcome))  # type: ignore[arg-type]  # the ledger's: jobs
        else:
            rows[kind.table].append(kind.build_row(outcome, catalogue, received))
    return batch


_NO_CATALOGUE = Catalogue(version="", devices={})  # job rows carry no peaks


def ledger_stage(
    batch: Batch, states: Mapping[JobKey, JobState], prices: PriceBook, *, now: datetime
) -> dict[JobKey, JobState]:
    """Run the batch's job events through the ledger; return the job states they changed."""
    result = apply((event for _, event in batch.jobs), states, prices)
    regressed = {index for index, _ in result.rejects}
    for index, why in result.rejects:
        record, event = batch.jobs[index]
        batch.accepted[event.type] -= 1
        batch.reject(record, why, now)
    received = epoch_ms(now)
    for index, (_, event) in enumerate(batch.jobs):
        if index not in regressed:
            kind = registry.TYPES[event.type]
            batch.tuples[kind.table].append(kind.build_row(event, _NO_CATALOGUE, received))
    for entry in result.entries:
        batch.tuples["ledger_entries"].append(entry.row(received))
        if not entry.priced and entry.device_seconds > 0:
            batch.unpriced[(entry.dc_id, entry.device_model)] += 1
    return result.states
