"""The agent loop: registration, heartbeat and collectors on their cadences, into an outbox. Wiring.

One `Agent` is one data center: on its first `step(now)` it registers (`cpn.dc.v1`), then at each
step it runs whatever is due at `now` (collectors on their `interval_s` grid, the heartbeat, the
daily registration) and spools the events in one batch. A collector that fails is logged in one
line and retried at its next turn; the others go on. A `Fleet` steps many agents that share one
outbox (one spool, one producer) and one clock, which is how the demo runs dozens of simulated
DCs in one process on accelerated event time; a lone agent is a fleet of one.

    # `surplus agent`: settings from TOML + environment, system clock
    agent = Agent.from_settings(load_settings(Path("agent.toml")))
    agent.run(stop)                  # until `stop` (a threading.Event) is set; then
    agent.close(timeout_s=10)        # flush what it can; the rest stays in the spool

    # the demo: N simulated DCs, accelerated event time, one spool and one producer
    t0 = datetime.now(UTC) - timedelta(hours=6)       # start in the past: see below
    fleet = Fleet.simulated(national_fleet(40, seed=7), kafka=KafkaSettings(bootstrap=b),
                            spool=SpoolSettings(path=d), clock=SimClock(t0, speed=60))
    fleet.run_for(3600)              # one hour of event time in one minute of real time
    fleet.close(timeout_s=30)        # True when every event was delivered

    fleet.step(now)                  # or drive it yourself (e.g. with a ManualClock)

    # events without Kafka: the simulator is pure
    SimulatedDataCenter(dc, sim, start=t0).events_between(t0, t1)   # -> [CloudEvent dict]

Event time is the clock's time. Receivers reject events more than 300 s ahead of their own clock
(`future_time`), so an accelerated clock should start far enough in the past that it does not
overtake the wall clock during the run (speed 60 for one real minute needs t0 <= now - 1 h).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agents import __version__
from agents.clock import Clock, SystemClock
from agents.collectors import Collected, Collector
from agents.fleet import SimDC
from agents.outbox import Outbox
from agents.records import CloudEvent, build, registration_event, to_ms
from agents.settings import AgentSettings, DataCenter, Intervals, KafkaSettings, SpoolSettings
from agents.watch import Status, StatusReporter
from agents.wiring import build_collectors, build_outbox, simulator_for
from schemas.events import Heartbeat

if TYPE_CHECKING:
    from agents.publisher import Signer

log = logging.getLogger("agents")
MAX_WAIT_S = 0.5  # the loop serves delivery reports and checks `stop` at least this often


class Agent:
    """One DC: its identity, its collectors and the cadences they run on."""

    def __init__(self, dc: DataCenter, collectors: Sequence[Collector], *, outbox: Outbox,
                 clock: Clock | None = None, intervals: Intervals | None = None,
                 state_file: Path | None = None, status_s: float | None = None,
                 status_dir: Path | None = None) -> None:
        self.dc, self.collectors, self.outbox = dc, list(collectors), outbox
        self.reporter = (StatusReporter(self.status, outbox.watch, every_s=status_s,
                                        spool_dir=status_dir) if status_s else None)
        self.reporter_hooks: list[Callable[[], None]] = [self.reporter.tick] if self.reporter else []
        self.clock = clock or SystemClock()
        self.intervals = intervals or Intervals()
        self.state_file = state_file
        self.boot_id = uuid.uuid4().hex
        self.counts: Counter[str] = Counter()  # events by type, and `<collector>_errors`
        self._started: datetime | None = None
        self._due: dict[str, datetime] = {}
        self._failing: Counter[str] = Counter()
        self._warned: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: AgentSettings, *, clock: Clock | None = None,
                      collectors: Sequence[Collector] | None = None,
                      outbox: Outbox | None = None) -> Agent:
        """Collectors, spool and Kafka producer as the settings say (what `surplus agent` runs)."""
        clock = clock or SystemClock()
        outbox = outbox or build_outbox(settings.kafka, settings.spool,
                                        signing_key_file=settings.signing_key_file,
                                        dc_id=settings.dc.dc_id)
        if collectors is None:
            collectors = build_collectors(settings, start=clock.now())
        return cls(settings.dc, collectors, outbox=outbox, clock=clock,
                   intervals=settings.intervals, state_file=settings.spool.path / "agent-clock",
                   status_s=settings.status_interval_s, status_dir=settings.spool.path)

    def status(self) -> Status:
        """The figures of a status line, now."""
        box = self.outbox
        return Status(spooled=box.counts.spooled, delivered=box.counts.delivered,
                      backlog=box.backlog,
                      oldest_unsent_age_s=round(box.oldest_age_s(to_ms(self.clock.now())), 1),
                      broker="up" if box.watch.up else "down")

    # -- one step ------------------------------------------------------------------------------

    def step(self, now: datetime | None = None) -> int:
        """Run what is due at `now` (default: the clock) and spool it; return the events spooled."""
        now = now or self.clock.now()
        events: list[CloudEvent] = []
        commits: list[Callable[[], None]] = []
        if self._started is None:
            self._started = now
            self._due = {"registry": now, "heartbeat": now}
            self._due.update({c.name: now for c in self.collectors})
        if now >= self._due["registry"]:
            events.append(registration_event(self.dc, now))
            self._due["registry"] = now + timedelta(seconds=self.intervals.registry_s)
        for collector in self.collectors:
            if now >= self._due[collector.name]:
                result = self._collect(collector, now)
                events += result.events
                commits.append(result.commit)
                self._due[collector.name] = _next_tick(now, collector.interval_s)
        if now >= self._due["heartbeat"]:
            events.append(self._heartbeat(now, pending=len(events)))
            self._due["heartbeat"] = _next_tick(now, self.intervals.heartbeat_s)
        if events:
            self._save_clock(now)  # before spooling: no spooled event is later than the saved time
            self.counts.update(e["type"] for e in events)
            self.outbox.put(events)
        for commit in commits:  # only now: the events are on disk
            commit()
        return len(events)

    def _collect(self, collector: Collector, now: datetime) -> Collected:
        try:
            result = collector.collect(now)
        except Exception as exc:  # any collector bug: one line, retried next turn
            self.counts[f"{collector.name}_errors"] += 1
            self._failing[collector.name] += 1
            n = self._failing[collector.name]
            if n == 1 or n % 20 == 0:
                detail = str(exc) or type(exc).__name__
                log.warning("collector %s failed (%d in a row): %s", collector.name, n, detail)
            return Collected()
        if self._failing.pop(collector.name, 0):
            log.info("collector %s works again", collector.name)
        if isinstance(result, list):
            result = Collected(result)
        warning = "; ".join(result.warnings)
        if warning != self._warned.get(collector.name, ""):  # once per change, not every turn
            if warning:
                log.warning("collector %s: partial data: %s", collector.name, warning[:2000])
            else:
                log.info("collector %s: complete data again", collector.name)
            self._warned[collector.name] = warning
        return result

    def _heartbeat(self, now: datetime, pending: int) -> CloudEvent:
        assert self._started is not None
        data = Heartbeat(dc_id=self.dc.dc_id, agent_version=__version__, boot_id=self.boot_id,
                         uptime_s=round((now - self._started).total_seconds(), 3),
                         spool_backlog_events=self.outbox.backlog + pending,
                         spool_oldest_age_s=round(self.outbox.oldest_age_s(to_ms(now)), 3))
        return build("cpn.heartbeat.v1", now, data)

    def _save_clock(self, now: datetime) -> None:
        """Remember the event time reached, so a restarted simulated clock resumes after it."""
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(f"{to_ms(now)}\n")
            tmp.replace(self.state_file)

    def next_due(self) -> datetime:
        return min(self._due.values()) if self._due else self.clock.now()

    # -- running alone -------------------------------------------------------------------------

    def _fleet(self) -> Fleet:
        return Fleet([self], outbox=self.outbox, clock=self.clock, hooks=self.reporter_hooks)

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> None:
        self._fleet().run_for(seconds, stop)

    def run(self, stop: threading.Event) -> None:
        self._fleet().run(stop)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop: flush for up to `timeout_s` and close the spool; True if nothing is left."""
        if self._started is not None:
            self._save_clock(self.clock.now())
        done = self.outbox.drain(timeout_s)
        if self.reporter is not None:
            self.reporter.write()
        return self.outbox.close(0 if done else min(1.0, timeout_s)) and done


class Fleet:
    """Agents sharing one outbox and one clock, stepped together.

    Their heartbeats report the shared spool's backlog and oldest age (one spool for all).
    """

    def __init__(self, agents: Iterable[Agent], *, outbox: Outbox, clock: Clock,
                 hooks: Sequence[Callable[[], None]] = ()) -> None:
        self.agents, self.outbox, self.clock = list(agents), outbox, clock
        self.hooks = list(hooks)  # run at each pass of the loop (status lines, metrics)

    @classmethod
    def simulated(cls, dcs: Sequence[SimDC], *, kafka: KafkaSettings, spool: SpoolSettings,
                  clock: Clock, intervals: Intervals | None = None, signer: Signer | None = None) -> Fleet:
        """Simulated DCs (agents.fleet.national_fleet) publishing through one spool and producer;
        `signer` (agents.publisher.fleet_signer) signs each DC's events with that DC's key."""
        intervals = intervals or Intervals()
        outbox = build_outbox(kafka, spool, client_id="surplus-fleet", signer=signer)
        start = clock.now()
        agents = [Agent(d.dc, [simulator_for(d, intervals, start)], outbox=outbox, clock=clock,
                        intervals=intervals) for d in dcs]
        return cls(agents, outbox=outbox, clock=clock)

    def step(self, now: datetime | None = None) -> int:
        now = now or self.clock.now()
        spooled = sum(agent.step(now) for agent in self.agents)
        self.outbox.pump()
        return spooled

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Run for `seconds` of the clock's time (event time: simulated seconds if accelerated)."""
        self._loop(self.clock.now() + timedelta(seconds=seconds), stop or threading.Event())

    def run(self, stop: threading.Event) -> None:
        self._loop(None, stop)

    def _loop(self, until: datetime | None, stop: threading.Event) -> None:
        if self.clock.speed == float("inf"):
            raise ValueError("a ManualClock does not run by itself: call step(now)")
        while not stop.is_set():
            now = self.clock.now()
            if until is not None and now >= until:
                break
            self.step(now)
            for hook in self.hooks:
                hook()
            due = min(a.next_due() for a in self.agents)
            if until is not None:
                due = min(due, until)
            wait = (due - self.clock.now()).total_seconds() / self.clock.speed
            self.outbox.wait(min(max(wait, 0.0), MAX_WAIT_S))

    def close(self, timeout_s: float = 10.0) -> bool:
        return self.outbox.close(timeout_s)


def _next_tick(now: datetime, interval_s: float) -> datetime:
    """The next point after `now` on the `interval_s` grid (aligned to the epoch)."""
    step_ms = max(1, int(interval_s * 1000))
    return datetime.fromtimestamp((to_ms(now) // step_ms + 1) * step_ms / 1000, tz=now.tzinfo)

