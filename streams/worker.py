"""The worker's batch handler: decode -> normalise -> ledger -> ClickHouse and dead letters ->
offsets to commit. Wiring between the pure core (batch, ledger) and the edges (sink, Kafka).

Order of effects for one batch: the dead-letter guard (streams/guard.py) judges the reject ratio
first and may stop the worker before anything happens; dead letters are produced to the
`deadletter` topic and every table's rows are written to ClickHouse; only then are the batch's
offsets returned for commit (or held back by the guard while the ratio is high).
While ClickHouse is unavailable the sink waits it out with back-off (streams/sink.py), so the
batch's offsets are returned only once its rows are in. A failure anywhere else raises, so nothing
is committed and the batch is read again after restart; every row carries its identity, so
reading it again changes nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faust.types import TP

from schemas.catalogue import Catalogue
from schemas.decode import Verifier
from schemas.prices import PriceBook
from streams.batch import Batch, DeadLetter, Record, ledger_stage, process
from streams.guard import DeadLetterGuard
from streams.ledger import JobKey, JobState
from streams.sink import Sink
from streams.source import Barrier

log = logging.getLogger(__name__)

# (topic, key, value, headers) -> awaitable delivery
Produce = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]
BatchObserver = Callable[[Batch, datetime], None]


def next_offsets(records: Sequence[Record]) -> dict[TP, int]:
    """{partition: the offset after the highest record of it}: what committing `records` means."""
    highest: dict[tuple[str, int], int] = {}
    get = highest.get
    for record in records:
        where = (record[0], record[1])  # (topic, partition), without attribute look-ups
        if record[2] > get(where, -1):
            highest[where] = record[2]
    return {TP(topic, partition): offset + 1 for (topic, partition), offset in highest.items()}


class Metrics:
    """Counts since start: in, accepted by type, rejected by reason, write latency, lag.

    Updated once per batch (never per event); served on /metrics by streams/metrics.py."""

    WRITE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self) -> None:
        self.events_in = 0
        self.rows_out = 0
        self.batches = 0
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.write_ms_last = 0.0
        self.write_ms_max = 0.0
        self.write_s_sum = 0.0
        self.write_buckets = [0] * (len(self.WRITE_BUCKETS_S) + 1)  # batches per bucket, +Inf last
        self.lag: dict[str, int] = {}  # "topic/partition" -> messages behind, as of its last batch

    def observe_write(self, elapsed_ms: float) -> None:
        """One batch's write time (milliseconds)."""
        self.write_ms_last = elapsed_ms
        self.write_ms_max = max(self.write_ms_max, elapsed_ms)
        self.write_s_sum += elapsed_ms / 1000
        self.write_buckets[bisect.bisect_left(self.WRITE_BUCKETS_S, elapsed_ms / 1000)] += 1

    def rows(self, worker: str, now: datetime) -> list[dict[str, Any]]:
        out = [
            ("events_in", "", self.events_in),
            ("rows_out", "", self.rows_out),
            ("batches", "", self.batches),
            ("write_ms_last", "", self.write_ms_last),
            ("write_ms_max", "", self.write_ms_max),
            ("consumer_lag", "", sum(self.lag.values())),
        ]
        out += [("accepted", t, n) for t, n in sorted(self.accepted.items())]
        out += [("rejected", r, n) for r, n in sorted(self.rejected.items())]
        return [
            {"ts": now, "worker": worker, "metric": m, "label": label, "value": float(v)}
            for m, label, v in out
        ]

    def line(self) -> str:
        rejected = ", ".join(f"{r}={n}" for r, n in sorted(self.rejected.items())) or "none"
        return (
            f"in={self.events_in} out_rows={self.rows_out} batches={self.batches} "
            f"rejected: {rejected}; write {self.write_ms_last:.0f} ms (max {self.write_ms_max:.0f}); "
            f"lag={sum(self.lag.values())}"
        )


@dataclass(frozen=True)
class Staged:
    """A batch prepared for its write: its rows, the offsets to commit after it, its size, the
    time it was processed at, and whether the dead-letter guard lets its offsets be committed."""

    batch: Batch
    offsets: dict[TP, int]
    events: int
    now: datetime
    commit: bool


class Handler:
    """Turns each batch of records into durable rows, then says which offsets to commit
    (in two stages, `prepare` and `complete`: a streams.source.StagedHandler)."""

    def __init__(
        self,
        *,
        sink: Sink,
        catalogue: Catalogue,
        prices: PriceBook,
        deadletter_topic: str,
        produce: Produce | None = None,
        verifier: Verifier | None = None,
        worker_id: str = "worker",
        metrics_interval_s: float = 10.0,
        job_cache_size: int = 200_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        highwater: Callable[[TP], int | None] | None = None,
        guard: DeadLetterGuard | None = None,
    ) -> None:
        self.sink = sink
        self.catalogue = catalogue
        self.prices = prices
        self.deadletter_topic = deadletter_topic
        self.produce = produce
        self.verifier = verifier
        self.worker_id = worker_id
        self.metrics = Metrics()
        self.metrics_interval_s = metrics_interval_s
        self._metrics_at = time.monotonic()
        self._flushed_batches = 0
        self.clock = clock
        self.highwater = highwater
        self.job_cache_size = job_cache_size
        self.jobs: OrderedDict[JobKey, JobState] = OrderedDict()
        self.observers: list[BatchObserver] = []
        self.guard = guard if guard is not None else DeadLetterGuard()
        self._held: dict[TP, int] = {}  # offsets whose commit the guard holds back

    def forget_jobs(self) -> None:
        """Drop cached job states, held offsets and lag figures (after a rebalance another worker
        may have moved them on)."""
        self.jobs.clear()
        self._held.clear()
        self.metrics.lag.clear()  # of partitions this worker may no longer own

    async def __call__(self, records: Sequence[Record]) -> dict[TP, int]:
        """Both stages at once: the offsets to commit once `records` are durable."""
        return await self.complete(await self.prepare(records))

    async def prepare(self, records: Sequence[Record], barrier: Barrier | None = None) -> Staged:
        """Decode, validate, normalise, the ledger and the dead letters of one batch: everything
        before its write (streams.source.run_batches overlaps it with the previous batch's
        write). `barrier` is awaited before reading job states from the store, so the read sees
        every earlier batch's rows. Raises what the dead-letter guard raises, before any effect."""
        now = self.clock()
        batch = process(records, now=now, catalogue=self.catalogue, verifier=self.verifier)
        if batch.jobs:
            await self._ledger(batch, now, barrier)
        commit = self.guard.observe(len(records), batch.rejected)  # raises before any effect
        if batch.dead and self.produce is not None:
            await self._send_dead_letters(batch.dead)
        return Staged(batch, next_offsets(records), len(records), now, commit)

    async def complete(self, staged: Staged) -> dict[TP, int]:
        """Write a prepared batch to ClickHouse; return the offsets to commit ({} while the
        dead-letter guard holds commits back). Raises the sink's SinkUnavailable."""
        batch, offsets, now = staged.batch, staged.offsets, staged.now
        started = time.perf_counter()
        written = await asyncio.to_thread(self.sink.write, batch.tuples)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for observer in self.observers:
            observer(batch, now)
        self._count(batch, staged.events, written, elapsed_ms, offsets)
        await self._maybe_flush_metrics(now)
        if self._held or not staged.commit:
            for tp, offset in offsets.items():
                self._held[tp] = max(offset, self._held.get(tp, -1))
            if not staged.commit:
                return {}
            offsets, self._held = self._held, {}
        return offsets

    async def _ledger(self, batch: Batch, now: datetime, barrier: Barrier | None = None) -> None:
        missing = batch.job_keys - self.jobs.keys()
        if missing:
            if barrier is not None:
                await barrier()  # the write in flight may hold these jobs' latest entries
            loaded = await asyncio.to_thread(self.sink.job_states, missing)
            self.jobs.update(loaded)
        changed = ledger_stage(batch, self.jobs, self.prices, now=now)
        for key, state in changed.items():
            self.jobs[key] = state
            self.jobs.move_to_end(key)
        while len(self.jobs) > self.job_cache_size:
            self.jobs.popitem(last=False)

    async def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        assert self.produce is not None
        deliveries = [
            await self.produce(self.deadletter_topic, d.key, d.value, d.headers())
            for d in dead
        ]
        await asyncio.gather(*(asyncio.ensure_future(x) for x in deliveries if x is not None))

    def _count(
        self, batch: Batch, n: int, written: int, elapsed_ms: float, offsets: dict[TP, int]
    ) -> None:
        m = self.metrics
        m.events_in += n
        m.rows_out += written
        m.batches += 1
        m.accepted.update(batch.accepted)
        m.rejected.update(batch.rejected)
        m.observe_write(elapsed_ms)
        if self.highwater is not None:
            for tp, next_offset in offsets.items():
                high = self.highwater(tp)
                if high is not None:
                    m.lag[f"{tp.topic}/{tp.partition}"] = max(0, high - next_offset)

    async def flush_metrics(self) -> None:
        """Write the counts now if they changed since the last write (on a timer and at stop)."""
        if self.metrics.batches != self._flushed_batches:
            await self._maybe_flush_metrics(self.clock(), force=True)

    async def _maybe_flush_metrics(self, now: datetime, force: bool = False) -> None:
        if not force and time.monotonic() - self._metrics_at < self.metrics_interval_s:
            return
        if self.sink.failing:  # ClickHouse is down and the sink said so: the counts wait too
            return
        self._flushed_batches = self.metrics.batches
        self._metrics_at = time.monotonic()
        log.info("worker %s: %s", self.worker_id, self.metrics.line())
        try:
            rows = self.metrics.rows(self.worker_id, now)
            await asyncio.to_thread(self.sink.insert, "pipeline_metrics", rows)
        except Exception as exc:  # metrics are best effort; data writes are not
            log.warning("could not write pipeline metrics: %s", exc)
