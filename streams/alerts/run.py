"""`surplus alerts run`: the one alert evaluator of the network, on a schedule or once. Wiring.

Each tick reads the store (every worker's rows), evaluates every rule, stores the alert state
and clock, and queues the notifications that are due; sender tasks deliver them. A tick that
cannot reach the store says so and the next one tries again; while another evaluator holds
the instance, a tick only checks whether it still does (docs/alerts.md, "One evaluator").
On SIGTERM/SIGINT (or after one tick with `once`) the queued notifications are delivered, and
what is still queued after `drain_s` is kept as undelivered (`surplus alerts resend`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from streams.alerts.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class Ticks:
    """What a run did."""

    ticks: int = 0
    failed: int = 0
    standby: int = 0  # ticks while another evaluator held the instance
    notifications: int = 0


async def evaluate(engine: Engine, *, interval_s: float, once: bool = False,
                   drain_s: float = 30.0, stop: asyncio.Event | None = None) -> Ticks:
    """Tick every `interval_s` until `stop` is set (or once); then drain and close the engine."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    done = Ticks()
    engine.start()
    try:
        while not stop.is_set():
            try:
                notes = await engine.tick()
                done.notifications += len(notes)
                done.standby += not engine.leading
                if notes:
                    log.info("alerts: queued %d notification(s) at stream time %s",
                             len(notes), engine.stream.clock)
            except Exception as exc:  # the store unreachable, a bad query: try the next tick
                done.failed += 1
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("alerts: evaluation failed (%s); trying again in %g s", first, interval_s)
            done.ticks += 1
            if once:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.drain(), timeout=drain_s)
    finally:
        await engine.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    return done
