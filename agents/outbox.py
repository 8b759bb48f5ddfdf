"""Spool first, then Kafka: events are delivered in spool order and acknowledged only by delivery
reports. Wiring between the spool (disk) and a publisher (the network); holds no I/O of its own.

`put(events)` serialises and spools a batch (overflow policy applies), then `pump()` hands
unsent records to the publisher within a window of `max_in_flight` and serves delivery reports:
a delivered record is acknowledged in the spool; a record the broker can never take is given up
(counted as `rejected`); any other failure purges the producer and rewinds the spool, so every
undelivered record is sent again, in order, with the same bytes (duplicates allowed, no loss).
With a `tally` (agents.tally), the job events the broker acknowledged are recorded there, in the
order of their delivery reports: the operator's own account of what it metered and the platform
received (what is still spooled, or given up, is not in it).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from agents.delivery import DeliveryError, OnDelivery
from agents.records import CloudEvent, Record, to_record
from agents.spool import Appended, Spool
from agents.watch import BrokerWatch

if TYPE_CHECKING:
    from agents.tally import Tally

log = logging.getLogger("agents.outbox")


class Publisher(Protocol):
    """What the outbox needs from a producer (agents.publisher.KafkaPublisher, or a test fake)."""

    def send(self, rec: Record) -> bool: ...
    def poll(self, timeout_s: float = 0.0) -> int: ...
    def reset(self) -> None: ...
    def close(self, timeout_s: float) -> int: ...


@dataclass
class OutboxCounts:
    spooled: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: int = 0  # given up: the broker can never take them (e.g. too large)
    rewinds: int = 0
    errors: int = 0  # delivery reports with an error (each is resent or given up)


class Outbox:
    """One spool and one publisher; many agents (DCs) may share an outbox."""

    def __init__(self, spool: Spool, publisher: Callable[[OnDelivery], Publisher], *,
                 max_in_flight: int = 20_000, retry_backoff_s: float = 1.0,
                 cursor_save_s: float = 0.5, tally: Tally | None = None,
                 watch: BrokerWatch | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.spool = spool
        self.tally = tally
        self.watch = watch or BrokerWatch()
        self.publisher = publisher(self._delivered)
        self.max_in_flight = max_in_flight
        self.retry_backoff_s = retry_backoff_s
        self.cursor_save_s = cursor_save_s
        self.counts = OutboxCounts()
        self._mono = monotonic
        self._in_flight = 0
        self._pending: deque[Record] = deque()  # read from the spool, refused by a full queue
        self._done: list[Record] = []  # delivered, not yet acknowledged in the spool
        self._rewind_at: float | None = None
        self._backoff = retry_backoff_s
        self._saved_at = 0.0

    # -- the producer's side -------------------------------------------------------------------

    def _delivered(self, rec: Record, err: DeliveryError | None) -> None:
        if err is None:
            self._done.append(rec)  # acknowledged in bulk by _settle (the hot path)
            return
        self._in_flight = max(0, self._in_flight - 1)
        if err.purged:
            return
        self.counts.errors += 1
        if err.permanent:
            self.spool.ack(rec.kind, rec.seq)
            self.counts.rejected += 1
            log.error("kafka refused an event for good (%s: %s); it is dropped from the spool",
                      err.name, err.detail)
            return
        if self._rewind_at is None:  # fatal or not, the producer is replaced before resending
            log.warning("delivery failed (%s: %s); resending from the spool in %.1f s",
                        err.name, err.detail, self._backoff)
            self._rewind_at = self._mono() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)

    def _poll(self, timeout_s: float = 0.0) -> None:
        self.publisher.poll(timeout_s)
        if self._done:
            done, self._done = self._done, []
            self.spool.ack_many(done)
            self._record(done)
            self._in_flight = max(0, self._in_flight - len(done))
            self.counts.delivered += len(done)
            self._backoff = self.retry_backoff_s
            if not self.watch.up:
                self.watch.delivered(self.spool.backlog)

    def _rewind(self) -> None:
        self.publisher.reset()
        self._poll(0)
        self._pending.clear()
        self._in_flight = 0
        self.spool.rewind()
        self._rewind_at = None
        self.counts.rewinds += 1

    # -- the agent's side ----------------------------------------------------------------------

    def put(self, events: Sequence[CloudEvent]) -> Appended:
        """Spool a batch of events (the overflow policy applies), then send what the window allows."""
        appended = self.spool.append([to_record(e) for e in events])
        self.counts.spooled += len(appended.records)
        self.pump()
        return appended

    def pump(self) -> int:
        """Serve delivery reports and send unsent records; return how many were sent."""
        self._poll(0)
        if self._rewind_at is not None and self._mono() >= self._rewind_at:
            self._rewind()
        sent = 0
        while self._rewind_at is None and self._in_flight < self.max_in_flight:
            if not self._pending:
                self._pending.extend(self.spool.read(min(5000, self.max_in_flight - self._in_flight)))
                if not self._pending:
                    break
            rec = self._pending[0]
            self._in_flight += 1  # before send: a report may come back synchronously
            if not self.publisher.send(rec):
                self._in_flight -= 1
                self._poll(0)
                break
            self._pending.popleft()
            sent += 1
        self.counts.sent += sent
        self.spool.tick()
        now = self._mono()
        if now - self._saved_at >= self.cursor_save_s:
            self.spool.save_cursor()
            self._saved_at = now
        return sent

    def _record(self, records: Sequence[Record]) -> None:
        if self.tally is None:
            return
        try:
            self.tally.record(records)
        except Exception as exc:  # the tally is the operator's check; it never stops metering
            log.error("could not record job events in the tally %s: %s", self.tally.path, exc)

    def wait(self, timeout_s: float) -> None:
        """Block up to `timeout_s` serving delivery reports (the idle part of a loop)."""
        self._poll(timeout_s)

    @property
    def backlog(self) -> int:
        return self.spool.backlog

    def oldest_age_s(self, now_ms: int) -> float:
        oldest = self.spool.oldest_time_ms()
        return 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000)

    def drain(self, timeout_s: float) -> bool:
        """Send and wait until every spooled event is delivered; False if `timeout_s` ran out."""
        deadline = self._mono() + timeout_s
        while True:
            self.pump()
            if self.spool.backlog == 0:
                return True
            if self._mono() >= deadline:
                return False
            self._poll(0.05)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Drain for up to `timeout_s`, then close the producer and the spool (what is left stays)."""
        done = self.drain(timeout_s)
        self.publisher.close(min(1.0, timeout_s))
        self.spool.close()
        if self.tally is not None:
            self.tally.close()
        return done
