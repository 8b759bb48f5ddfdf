"""What an operator watches: the broker's state as one line per change, and status lines. Logging.

librdkafka repeats itself while a broker is down (a connection error several times a second).
`BrokerWatch` (the project's `surplus.logs.ServiceWatch`, with the agent's words) is the `logger`
object handed to the producer (confluent-kafka calls `logger.log(level, fmt, *args)`) and its
`error_cb`: connection trouble becomes one line when the broker goes away (`Kafka host:9092
unreachable: Connection refused; events stay in the spool ...`) and one when a delivery shows it
is back (`Kafka host:9092 reachable again after 63 s ...`); any other librdkafka warning is
logged once per distinct text every `repeat_s`; the rest goes to `agents.librdkafka` at DEBUG.

`StatusReporter` logs a status line (spooled, delivered, backlog, oldest unsent age) every
`every_s` and once when the backlog of an outage is delivered (`caught up: ...`), and writes the
same figures to `status.json` in the spool directory, which `surplus agent status` prints.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from surplus.logs import UNREACHABLE_STATE, LibrdkafkaLog, Once, ServiceWatch

log = logging.getLogger("agents.kafka")
status_log = logging.getLogger("agents.status")
librdkafka_log = logging.getLogger("agents.librdkafka")
STATUS_FILE = "status.json"


class BrokerWatch(ServiceWatch):
    """librdkafka's logs and errors folded into broker state changes (see the module docstring)."""

    def __init__(self, name: str = "Kafka", *, repeat_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name, logger=log, monotonic=monotonic)
        self.repeat_s = repeat_s
        self._hooks = LibrdkafkaLog(self, once=Once(repeat_s, monotonic), logger=librdkafka_log)
        self.outages = 0
        self.catching_up = False  # back after an outage, backlog not yet delivered
        self._backlog = 0

    @property
    def down_since(self) -> float | None:
        return self.since

    @property
    def errors(self) -> int:
        """librdkafka errors reported (connection trouble included)."""
        return self._hooks.errors

    # -- what librdkafka calls -----------------------------------------------------------------

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """confluent-kafka's `logger` hook: `log(level, "%s [%s] %s", facility, client, text)`."""
        self._hooks.log(level, fmt, *args)

    def error(self, name: str, text: str) -> None:
        """An `error_cb` report (a KafkaError's name and text)."""
        self._hooks.error(name, text)

    # -- state ---------------------------------------------------------------------------------

    def unreachable(self, why: str) -> None:
        self.trouble(UNREACHABLE_STATE, why)

    def delivered(self, backlog: int) -> None:
        """Deliveries were acknowledged: the broker is reachable."""
        self._backlog = backlog
        self.ok()

    def said_down(self, kind: str, why: str) -> None:
        self.outages += 1
        self.catching_up = False
        what = "unreachable" if kind == UNREACHABLE_STATE else "not ready yet"
        self.log_line(f"{self.name} {what}: {why}; events stay in the spool until it is back")

    def said_up(self, was: str, after_s: float) -> None:
        self.catching_up = True
        back = "reachable again" if was == UNREACHABLE_STATE else "ready"
        self.log_line(f"{self.name} {back} after {after_s:.0f} s; "
                      f"sending the backlog of {self._backlog} events")

    def log_line(self, text: str) -> None:
        log.warning("%s", text)


@dataclass(frozen=True)
class Status:
    """The figures of a status line."""

    spooled: int
    delivered: int
    backlog: int
    oldest_unsent_age_s: float
    broker: str  # "up" or "down"
    written_at_ms: int = 0
    pid: int = 0

    def line(self) -> str:
        return (f"{self.spooled} spooled, {self.delivered} delivered, backlog {self.backlog} "
                f"events, oldest unsent {self.oldest_unsent_age_s:.1f} s, broker {self.broker}")


class StatusReporter:
    """Status lines every `every_s` and at catch-up; the same figures in `<spool>/status.json`."""

    def __init__(self, figures: Callable[[], Status], watch: BrokerWatch, *, every_s: float,
                 spool_dir: Path | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.figures, self.watch, self.every_s = figures, watch, every_s
        self.path = spool_dir / STATUS_FILE if spool_dir is not None else None
        self._mono = monotonic
        self._last = monotonic()
        self.lines = 0

    def tick(self) -> None:
        now = self._mono()
        status: Status | None = None
        if self.watch.catching_up:
            status = self.figures()
            if status.backlog == 0:
                self.watch.catching_up = False
                status_log.info("caught up: %s", status.line())
                self.lines += 1
                self._last = now
                self.write(status)
                return
        if now - self._last >= self.every_s:
            status = status or self.figures()
            status_log.info("status: %s", status.line())
            self.lines += 1
            self._last = now
            self.write(status)

    def write(self, status: Status | None = None) -> None:
        if self.path is None:
            return
        status = status or self.figures()
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({**asdict(status), "written_at_ms": int(time.time() * 1000),
                                       "pid": os.getpid()}))
            os.replace(tmp, self.path)
        except OSError as exc:  # the status file is a convenience: never stop the agent for it
            status_log.debug("cannot write %s: %s", self.path, exc)


def read_status_file(spool_dir: Path) -> Status | None:
    try:
        raw = json.loads((spool_dir / STATUS_FILE).read_text())
        return Status(**raw)
    except (OSError, ValueError, TypeError):
        return None
