"""The seam between the worker and faust: a `BatchSource` protocol and the batch loop over it. Wiring.

A `BatchSource` is what the worker needs from a Kafka consumer group, and nothing more:

* `fetch(timeout_s)` -> the records read since the last call (in offset order per partition,
  each once per generation; `[]` when none came within the timeout);
* `generation` -> a number that changes at every rebalance (records fetched under an older
  generation may belong to another worker now);
* `commit(offsets)` -> commit `{TP: next offset}` for the partitions still assigned; True if
  anything was committed;
* `stopping` -> True once the service is being stopped.

`run_batches(source, handler, ...)` is the loop: it collects records into a batch (up to
`max_events`, or `max_wait_s` after the first record, or when a fetch comes back empty), hands
the batch to the handler, and commits the offsets the handler returns only after the handler
returned (ClickHouse and the dead-letter topic took the batch) and only if no rebalance happened
meanwhile. A handler that raises stops the loop with nothing of that batch committed.

A `StagedHandler` (the worker's `Handler`) comes in two stages, `prepare(records, barrier)`
(decode, validate, normalise, the ledger, dead letters) and `complete(staged)` (the ClickHouse
write; returns the offsets). The loop then overlaps batch N's write, in its own task, with the
fetching and preparing of batch N+1, and keeps every rule above: at most one write is in
flight; writes complete in batch order; N's offsets are committed after N's write returned
(before N+1's write starts), never if it raised; a stage that needs to read what the sink wrote
(the ledger's job states) first awaits `barrier()`, which settles the write in flight. On a
stop the write in flight is settled (written and committed) before the loop returns; an error
of either stage (or a cancellation) stops the loop with the write in flight uncommitted: its
batch is read again by whoever owns the partition next, and its rows are idempotent.

`FaustBatchSource` adapts faust's aiokafka consumer; it is the only code that calls faust's
private consumer methods (`_wait_next_records`, `_read_offset`, `_commit_offsets`), and
tests/integration/test_batch_source_contract.py holds it to the protocol on the real broker, so
a faust upgrade that changes them fails a test, not production.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from faust.types import TP

from streams.batch import Record

log = logging.getLogger(__name__)

# records (in arrival order per partition) -> the offsets to commit once they are durable
BatchHandler = Callable[[Sequence[Record]], Awaitable[dict[TP, int]]]
# awaited by a stage that must see what earlier batches wrote
Barrier = Callable[[], Awaitable[None]]


class StagedHandler(Protocol):
    """A BatchHandler in two stages, so that a write overlaps the next batch's preparation."""

    def __call__(self, records: Sequence[Record]) -> Awaitable[dict[TP, int]]: ...

    async def prepare(self, records: Sequence[Record], barrier: Barrier | None = None) -> Any: ...

    async def complete(self, staged: Any) -> dict[TP, int]: ...


class BatchSource(Protocol):
    """Records of a consumer group's assigned partitions in, `commit(offsets)` out."""

    @property
    def generation(self) -> int: ...

    @property
    def stopping(self) -> bool: ...

    async def fetch(self, timeout_s: float) -> list[Record]: ...

    async def commit(self, offsets: Mapping[TP, int]) -> bool: ...


async def run_batches(source: BatchSource, handler: BatchHandler, *, max_events: int,
                      max_wait_s: float) -> None:
    """Batch, handle, commit after the handler, until the source stops (see the module doc)."""
    pending: list[Record] = []
    first_at = 0.0
    generation = source.generation
    poll_s = min(max_wait_s, 1.0)
    staged = cast(StagedHandler, handler) if _is_staged(handler) else None
    in_flight: tuple[asyncio.Future[dict[TP, int]], int] | None = None  # (its write, its generation)

    async def settle() -> None:
        """Wait for the write in flight; commit its offsets if no rebalance happened since."""
        nonlocal in_flight
        if in_flight is None:
            return
        task, written_in = in_flight
        in_flight = None
        offsets = await task
        if offsets and source.generation == written_in:
            await source.commit(offsets)

    try:
        while not source.stopping:
            records = await source.fetch(poll_s)
            if in_flight is not None and (in_flight[0].done() or not records):
                await settle()  # its commit (or its error) as soon as it is known; idle: wait for it
            if source.stopping:
                break
            if source.generation != generation:
                # a rebalance happened: what we hold may belong to another worker now; drop it
                # uncommitted (its owner reads it again)
                pending.clear()
                generation = source.generation
            got = len(records)
            if got:
                if not pending:
                    first_at = time.monotonic()
                pending.extend(records)
            if pending and (len(pending) >= max_events or got == 0 or time.monotonic() - first_at >= max_wait_s):
                batch, pending = pending, []
                if staged is not None:
                    prepared = await staged.prepare(batch, settle)  # overlaps the write in flight
                    await settle()  # the previous batch written and committed before this one's write
                    in_flight = (asyncio.ensure_future(staged.complete(prepared)), generation)
                else:
                    offsets = await handler(batch)
                    if offsets and source.generation == generation:
                        await source.commit(offsets)
            await asyncio.sleep(0)
    except BaseException:
        # stopped by an error or a cancellation: the write in flight, if any, is left uncommitted
        # (its batch is read again, and rows are idempotent) and its own outcome dropped
        if in_flight is not None:
            task = in_flight[0]
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: the error raised is the one that stopped the loop
        raise
    try:
        await settle()  # stopping: the last batch written and committed
    except Exception as exc:
        log.warning("stopping: the last batch was not committed (%s); it is read again at the next start", exc)


def _is_staged(handler: object) -> bool:
    return callable(getattr(handler, "prepare", None)) and callable(getattr(handler, "complete", None))


class FaustBatchSource:
    """`BatchSource` over faust's aiokafka consumer (`faust.transport.drivers.aiokafka.Consumer`)."""

    def __init__(self, consumer: Any, fetcher: Any) -> None:
        self._consumer = consumer
        self._app = consumer.app
        self._fetcher_stopped = fetcher._stopped.is_set
        self._consumer_stopped = consumer._stopped.is_set
        self._read_offset = consumer._read_offset

    @property
    def generation(self) -> int:
        return int(self._app.consumer_generation_id)

    @property
    def stopping(self) -> bool:
        return bool(self._consumer_stopped() or self._fetcher_stopped() or self._consumer.should_stop)

    async def fetch(self, timeout_s: float) -> list[Record]:
        records, _ = await self._consumer._wait_next_records(timeout=timeout_s)
        out: list[Record] = []
        if not records:
            return out
        read_offset = self._read_offset
        make = tuple.__new__  # Record's own constructor, without its Python-level __new__
        extend = out.extend
        for tp, batch in records.items():
            if not batch:
                continue
            floor = read_offset.get(tp)
            read_offset[tp] = batch[-1].offset + 1
            if floor is not None and batch[0].offset < floor:
                # already handed out in this generation (a re-fetch after a seek)
                batch = [rec for rec in batch if rec.offset >= floor]
            extend([make(Record, (rec.topic, rec.partition, rec.offset, rec.key,
                                  b"" if rec.value is None else rec.value,
                                  tuple(rec.headers) if rec.headers else ()))
                    for rec in batch])
        return out

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        return bool(await self._consumer._commit_offsets(offsets))
