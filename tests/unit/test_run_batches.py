"""The batch loop with a two-stage handler (streams/source.py): batch N's write overlaps batch
N+1's preparation, and still N's offsets are committed only after N's write returned, before
N+1's write starts, never when it raised or after a rebalance; a read of the store waits for
the write in flight; an idle stream commits its last batch; a stop settles the write in
flight, a cancellation leaves it uncommitted."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from faust.types import TP

from streams.batch import Record
from streams.source import Barrier, run_batches

TOPIC = "cpn.capacity"
TP0 = TP(TOPIC, 0)


def records(first: int, n: int) -> list[Record]:
    return [Record(TOPIC, 0, first + i, b"k", b"{}") for i in range(n)]


class Source:
    """A BatchSource over a script of fetches; logs commits into the shared event log."""

    def __init__(self, chunks: list[list[Record]], log: list[tuple[Any, ...]]) -> None:
        self.chunks, self.log = chunks, log
        self.generation = 1
        self.stopping = False
        self.committed: list[dict[TP, int]] = []
        self.stop_when_committed: int | None = None

    async def fetch(self, timeout_s: float) -> list[Record]:
        await asyncio.sleep(0.001)
        if self.chunks:
            return self.chunks.pop(0)
        if self.stop_when_committed is not None and self.committed and \
                max(o[TP0] for o in self.committed) >= self.stop_when_committed:
            self.stopping = True
        return []

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        self.committed.append(dict(offsets))
        self.log.append(("commit", offsets[TP0]))
        return True


class Handler:
    """A StagedHandler whose writes wait for a gate per batch (by its first offset)."""

    def __init__(self, log: list[tuple[Any, ...]], *, reads: set[int] = frozenset(),  # type: ignore[assignment]
                 fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.log, self.reads, self.fail = log, reads, fail
        self.gates: dict[int, asyncio.Event] = {}

    def gate(self, first: int) -> asyncio.Event:
        return self.gates.setdefault(first, asyncio.Event())

    async def __call__(self, batch: Sequence[Record]) -> dict[TP, int]:
        return await self.complete(await self.prepare(batch))

    async def prepare(self, batch: Sequence[Record], barrier: Barrier | None = None) -> Sequence[Record]:
        first = batch[0].offset
        self.log.append(("prepare", first))
        if first in self.reads and barrier is not None:
            await barrier()
            self.log.append(("read", first))
        return batch

    async def complete(self, batch: Sequence[Record]) -> dict[TP, int]:
        first = batch[0].offset
        self.log.append(("write", first))
        await self.gate(first).wait()
        if first in self.fail:
            raise RuntimeError(f"ClickHouse refused batch {first}")
        self.log.append(("written", first))
        return {TP0: batch[-1].offset + 1}


async def run(source: Source, handler: Handler, **kw: Any) -> asyncio.Task[None]:
    return asyncio.ensure_future(run_batches(source, handler, max_events=kw.get("max_events", 10),
                                            max_wait_s=kw.get("max_wait_s", 5.0)))


async def until(predicate: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def test_a_write_overlaps_the_next_preparation_and_commits_stay_after_their_write() -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10), records(10, 10), records(20, 10)], log)
        source.stop_when_committed = 30
        handler = Handler(log)
        task = await run(source, handler)
        await until(lambda: ("prepare", 10) in log)  # batch 10 prepared while batch 0 is being written
        assert ("written", 0) not in log and source.committed == []
        handler.gate(0).set()
        await until(lambda: ("write", 10) in log)
        handler.gate(10).set()
        handler.gate(20).set()
        await asyncio.wait_for(task, 5)
        return log

    log = asyncio.run(scenario())
    assert log.index(("prepare", 10)) < log.index(("written", 0))  # the overlap
    for first in (0, 10, 20):  # each commit after its own write, before the next write starts
        assert log.index(("written", first)) < log.index(("commit", first + 10))
        if first < 20:
            assert log.index(("commit", first + 10)) < log.index(("write", first + 10))
    assert [c for c in log if c[0] == "commit"] == [("commit", 10), ("commit", 20), ("commit", 30)]


def test_a_failed_write_stops_the_loop_with_nothing_of_it_or_later_committed() -> None:
    async def scenario() -> tuple[Source, BaseException | None]:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10), records(10, 10), records(20, 10)], log)
        handler = Handler(log, fail={10})
        for first in (0, 10, 20):
            handler.gate(first).set()
        task = await run(source, handler)
        try:
            await asyncio.wait_for(task, 5)
        except RuntimeError as exc:
            return source, exc
        return source, None

    source, error = asyncio.run(scenario())
    assert str(error) == "ClickHouse refused batch 10"
    assert source.committed == [{TP0: 10}]  # batch 0 only: not 10, and not 20 prepared after it


def test_an_idle_stream_commits_its_last_batch_without_waiting_for_another() -> None:
    async def scenario() -> Source:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 4)], log)
        handler = Handler(log)
        handler.gate(0).set()
        task = await run(source, handler)
        await until(lambda: source.committed)
        source.stopping = True
        await asyncio.wait_for(task, 5)
        return source

    assert asyncio.run(scenario()).committed == [{TP0: 4}]


def test_a_read_of_the_store_waits_for_the_write_in_flight() -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10), records(10, 10)], log)
        source.stop_when_committed = 20
        handler = Handler(log, reads={10})
        task = await run(source, handler)
        await until(lambda: ("prepare", 10) in log)
        await asyncio.sleep(0.05)
        assert ("read", 10) not in log  # batch 0 is still being written
        handler.gate(0).set()
        handler.gate(10).set()
        await asyncio.wait_for(task, 5)
        return log

    log = asyncio.run(scenario())
    assert log.index(("written", 0)) < log.index(("commit", 10)) < log.index(("read", 10))


def test_a_rebalance_during_a_write_drops_its_commit() -> None:
    async def scenario() -> Source:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10)], log)
        handler = Handler(log)
        task = await run(source, handler)
        await until(lambda: ("write", 0) in log)
        source.generation = 2  # the partitions moved while the batch was being written
        handler.gate(0).set()
        await until(lambda: ("written", 0) in log)
        await asyncio.sleep(0.05)
        source.stopping = True
        await asyncio.wait_for(task, 5)
        return source

    assert asyncio.run(scenario()).committed == []


def test_a_stop_settles_the_write_in_flight_and_a_cancellation_does_not() -> None:
    async def stop() -> Source:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10)], log)
        handler = Handler(log)
        task = await run(source, handler, max_events=10)
        await until(lambda: ("write", 0) in log)
        source.stopping = True
        await asyncio.sleep(0.05)
        assert not task.done()  # waiting for its write
        handler.gate(0).set()
        await asyncio.wait_for(task, 5)
        return source

    assert asyncio.run(stop()).committed == [{TP0: 10}]

    async def cancel() -> tuple[Source, Handler]:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 10)], log)
        handler = Handler(log)
        task = await run(source, handler)
        await until(lambda: ("write", 0) in log)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        handler.gate(0).set()
        await asyncio.sleep(0.05)
        return source, handler

    source, handler = asyncio.run(cancel())
    assert source.committed == [] and ("written", 0) not in handler.log  # its write was cancelled


def test_a_plain_handler_still_runs_one_batch_at_a_time() -> None:
    async def scenario() -> Source:
        log: list[tuple[Any, ...]] = []
        source = Source([records(0, 5), records(5, 5)], log)
        source.stop_when_committed = 10
        calls: list[int] = []

        async def plain(batch: Sequence[Record]) -> dict[TP, int]:
            calls.append(batch[0].offset)
            return {TP0: batch[-1].offset + 1}

        await asyncio.wait_for(run_batches(source, plain, max_events=5, max_wait_s=1.0), 5)
        assert calls == [0, 5]
        return source

    assert asyncio.run(scenario()).committed == [{TP0: 5}, {TP0: 10}]
