"""The alert engine: tick (read the store -> evaluate -> plan -> persist -> queue), send. Wiring.

The pure parts (snapshot, rules, evaluate, dispatch) decide; this class owns their state between
ticks and does the I/O: the store's relations through `StoreReads` and the alert tables through
`AlertStore`, both in a thread, HTTP through `Deliverer` in a bounded pool of sender tasks. It
runs in `surplus alerts run`, once for the whole network, whatever the number of workers. What
a sender cannot deliver, or what is still queued at shutdown, goes to the undelivered table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from streams.alerts.config import RulesFile
from streams.alerts.delivery import Deliverer
from streams.alerts.dispatch import GroupId, absorb, plan
from streams.alerts.evaluate import step
from streams.alerts.model import AlertState, Attempt, Group, Notification
from streams.alerts.persist import AlertStore
from streams.alerts.reads import StoreReads
from streams.alerts.rules import observe_all
from streams.alerts.snapshot import EPOCH, StreamClock, needs

log = logging.getLogger(__name__)
ANNOTATIONS_WRITE_EVERY_S = 60.0


class Engine:
    def __init__(
        self,
        rules: RulesFile,
        store: AlertStore,
        reads: StoreReads,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        deliverer: Deliverer | None = None,
        evaluator: str = "evaluator",
    ) -> None:
        self.rules = rules
        self.store = store
        self.reads = reads
        self.clock = clock
        self.settings = rules.engine
        self.started_at = clock()
        self.stream = StreamClock(started_at=self.started_at, idle_after_s=self.settings.idle_after_s)
        self.states: dict[str, AlertState] = {}
        self.alerts: dict[str, AlertState] = {}
        self.groups: dict[GroupId, Group] = {}
        self.deliverer = deliverer or Deliverer(
            {r.name: r for r in rules.receiver}, on_attempt=self._log_attempt, clock=clock
        )
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=self.settings.queue_max)
        self._senders: list[asyncio.Task[None]] = []
        self._persisted: dict[str, AlertState] = {}
        self._written_at: dict[str, datetime] = {}
        self._persisted_groups: dict[GroupId, Group] = {}
        self.evaluator = evaluator
        self.leading = False
        self._standing_by: tuple[str, datetime] | None = None
        self._tick_lock = asyncio.Lock()

    # --- start ---------------------------------------------------------------------------

    def load(self) -> None:
        """Alert state and groups from the store (blocking): a restart sends no second firing."""
        loaded = self.store.load_states()
        self.states = {fp: s for fp, s in loaded.items() if s.status != "resolved"}
        self.alerts = {fp: s for fp, s in loaded.items() if s.status != "pending"}
        self.groups = self.store.load_groups()
        self._persisted = dict(loaded)
        self._persisted_groups = dict(self.groups)
        self.store.load_clock(self.stream)
        log.info("alerts: loaded %d alerts, %d groups; stream clock %s", len(loaded),
                 len(self.groups), self.stream.clock)

    # --- tick ----------------------------------------------------------------------------

    def behind(self, stream_now: datetime, wall: datetime) -> bool:
        """Is the stream replaying the past (a backfill) rather than telling the present?"""
        lag_s = (wall - stream_now).total_seconds()
        return not self.settings.page_on_backfill and lag_s > self.settings.backfill_lookback_s

    async def lead(self, wall: datetime) -> bool:
        """Hold the instance, or stand by while another evaluator holds it (its clock row is
        younger than `lease_s`). Taking it over reloads the state that evaluator stored."""
        holder = await asyncio.to_thread(self.store.clock_holder)
        if holder is not None:
            who, at = holder
            if who and who != self.evaluator and (wall - at).total_seconds() < self.settings.lease_s:
                if self.leading or holder != self._standing_by:
                    log.warning("alerts: evaluator %s holds instance %r; standing by", who,
                                self.settings.instance)
                self.leading, self._standing_by = False, holder
                return False
        if self.leading:
            return True
        if self._standing_by is not None:  # the other one stopped: go on from what it stored
            await asyncio.to_thread(self.load)
        await asyncio.to_thread(self.store.save_clock, self.stream, self.evaluator, wall)
        holder = await asyncio.to_thread(self.store.clock_holder)  # the newest claim wins
        self.leading = holder is not None and holder[0] == self.evaluator
        if self.leading:
            self._standing_by = None
        return self.leading

    async def tick(self) -> list[Notification]:
        """Evaluate every rule now; queue the notifications that are due; persist the state.
        Nothing while another evaluator holds the instance."""
        async with self._tick_lock:
            wall = self.clock()
            if not await self.lead(wall):
                return []
            newest = await asyncio.to_thread(self.reads.newest_event)
            stream_now = self.stream.advance(newest, wall)
            if stream_now is None:
                await self._persist(wall)
                return []
            snap = await asyncio.to_thread(self.reads.snapshot, needs(self.rules, stream_now, wall),
                                           stream_now, wall, self.started_at)
            rule_ids = {r.id for r in self.rules.rule}
            result = step(self.states, observe_all(self.rules, snap), rule_ids, stream_now)
            self.states = result.states
            self.alerts = absorb(self.alerts, result)
            notes: list[Notification] = []
            if not self.behind(stream_now, wall):
                receivers = {r.name: r for r in self.rules.receiver}
                planned = plan(self.alerts, self.groups, receivers, wall=wall,
                               external_url=self.settings.external_url,
                               new_id=lambda: uuid.uuid4().hex)
                notes, self.groups, self.alerts = planned.notifications, planned.groups, planned.alerts
            await self._persist(wall)
            for n in notes:
                await self._enqueue(n)
            return notes

    async def _persist(self, wall: datetime) -> None:
        try:  # every tick: the clock, and this evaluator's hold on the instance
            await asyncio.to_thread(self.store.save_clock, self.stream, self.evaluator, wall)
        except Exception as exc:  # retried at the next tick
            log.warning("alerts: could not persist the stream clock: %s", exc)
        current = {fp: a for fp, a in self.alerts.items() if a.status == "resolved"}
        current.update(self.states)
        changed = [s for fp, s in current.items() if self._stale(fp, s, wall)]
        gone = [s for fp, s in self._persisted.items() if fp not in current]
        groups = [g for gid, g in self.groups.items() if self._persisted_groups.get(gid) != g]
        ended = [g for gid, g in self._persisted_groups.items() if gid not in self.groups]
        if not (changed or gone or groups or ended):
            return
        try:
            await asyncio.to_thread(self.store.save_states, changed, gone)
            await asyncio.to_thread(self.store.save_groups, groups, ended)
        except Exception as exc:  # retried at the next tick: nothing is marked as written
            log.warning("alerts: could not persist state: %s", exc)
            return
        for s in changed:
            self._written_at[s.fingerprint] = wall
        for s in gone:
            self._written_at.pop(s.fingerprint, None)
        self._persisted = current
        self._persisted_groups = dict(self.groups)

    def _stale(self, fp: str, s: AlertState, wall: datetime) -> bool:
        old = self._persisted.get(fp)
        if old is None:
            return True
        core = replace(s, annotations={}, last_true_at=EPOCH)
        if core != replace(old, annotations={}, last_true_at=EPOCH):
            return True
        if old == s:
            return False
        written = self._written_at.get(fp, EPOCH)
        return (wall - written).total_seconds() >= ANNOTATIONS_WRITE_EVERY_S

    # --- sending -------------------------------------------------------------------------

    async def _enqueue(self, n: Notification) -> None:
        try:
            self.queue.put_nowait(n)
        except asyncio.QueueFull:
            log.warning("alerts: send queue full; notification %s kept as undelivered", n.id)
            await self._keep(n, 0, "send queue full")

    async def _keep(self, n: Notification, attempts: int, error: str) -> None:
        try:
            await asyncio.to_thread(self.store.save_undelivered, n, attempts, error)
        except Exception as exc:
            log.error("alerts: could not keep undelivered notification %s (%s): %s",
                      n.id, exc, n.body.decode("utf-8", "replace"))

    async def _log_attempt(self, attempt: Attempt) -> None:
        try:
            await asyncio.to_thread(self.store.log_attempts, [attempt])
        except Exception as exc:
            log.warning("alerts: could not log attempt: %s", exc)

    async def _sender(self) -> None:
        while True:
            n = await self.queue.get()
            try:
                try:
                    outcome = await self.deliverer.send(n)
                except asyncio.CancelledError:
                    await self._keep(n, 0, "evaluator stopped during delivery")
                    raise
                if not outcome.delivered:
                    log.warning("alerts: %s to %s undelivered after %d attempts: %s",
                                n.status, n.receiver, outcome.attempts, outcome.error)
                    await self._keep(n, outcome.attempts, outcome.error)
            finally:
                self.queue.task_done()

    def start(self) -> None:
        """Start the sender tasks on the running loop."""
        if not self._senders:
            self._senders = [asyncio.create_task(self._sender(), name=f"alerts-sender-{i}")
                             for i in range(self.settings.senders)]

    async def drain(self) -> None:
        """Wait until every queued notification was delivered or kept."""
        await self.queue.join()

    async def close(self) -> None:
        """Stop the senders; whatever is still queued is kept as undelivered."""
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders = []
        while not self.queue.empty():
            n = self.queue.get_nowait()
            self.queue.task_done()
            await self._keep(n, 0, "evaluator stopped before delivery")
        await self.deliverer.aclose()
        if self.leading:  # let a successor take over at once
            try:
                await asyncio.to_thread(self.store.save_clock, self.stream, "", self.clock())
            except Exception as exc:
                log.warning("alerts: could not release instance %r: %s", self.settings.instance, exc)
            self.leading = False


def engine_from(rules: RulesFile, client: Any, database: str, **kwargs: Any) -> Engine:
    return Engine(rules, AlertStore(client, database, rules.engine.instance),
                  StoreReads(client, database), **kwargs)
