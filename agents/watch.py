"""What an operator watches: the broker's state as one line per change, and status lines. Logging.

librdkafka repeats itself while a broker is down (a connection error several times a second).
`BrokerWatch` is the `logger` object handed to the producer (confluent-kafka calls
`logger.log(level, fmt, *args)`) and its `error_cb`: connection trouble becomes one line when
the broker goes away (`kafka: broker unreachable ...`) and one when a delivery shows it is back
(`kafka: broker reachable again after 63 s ...`); any other librdkafka warning is logged once per
distinct text every `repeat_s`; the rest goes to the `agents.librdkafka` logger at DEBUG.

`StatusReporter` logs a status line (spooled, delivered, backlog, oldest unsent age) every
`every_s` and once when the backlog of an outage is delivered (`caught up: ...`), and writes the
same figures to `status.json` in the spool directory, which `surplus agent status` prints.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("agents.kafka")
status_log = logging.getLogger("agents.status")
librdkafka_log = logging.getLogger("agents.librdkafka")

# librdkafka's words for "cannot reach the broker" (logs and error_cb texts, error names)
UNREACHABLE = re.compile(
    r"connect to .* failed|connection refused|disconnected|all broker|brokers are down|"
    r"transport failure|failed to resolve|resolve|timed out|receive failed|send failed|"
    r"connection reset|_TRANSPORT|_ALL_BROKERS_DOWN|_RESOLVE|_TIMED_OUT|broken pipe|"
    r"no route to host|network is unreachable|host is unreachable", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
STATUS_FILE = "status.json"


class BrokerWatch:
    """librdkafka's logs and errors folded into broker state changes (see the module docstring)."""

    def __init__(self, *, repeat_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.repeat_s = repeat_s
        self._mono = monotonic
        self.down_since: float | None = None
        self.outages = 0
        self.errors = 0  # librdkafka errors reported (connection trouble included)
        self.catching_up = False  # back after an outage, backlog not yet delivered
        self._said: dict[str, float] = {}

    @property
    def up(self) -> bool:
        return self.down_since is None

    # -- what librdkafka calls -----------------------------------------------------------------

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """confluent-kafka's `logger` hook: `log(level, "%s [%s] %s", facility, client, text)`."""
        text = fmt % args if args else fmt
        if UNREACHABLE.search(text):
            message = str(args[-1]) if len(args) == 3 else text
            self.unreachable(_THREAD.sub("", message))
        elif level >= logging.WARNING:
            self._once(level, f"librdkafka: {text}")
        else:
            librdkafka_log.log(logging.DEBUG, "%s", text)

    def error(self, name: str, text: str) -> None:
        """An `error_cb` report (a KafkaError's name and text)."""
        self.errors += 1
        if UNREACHABLE.search(name) or UNREACHABLE.search(text):
            self.unreachable(text)
        else:
            self._once(logging.WARNING, f"kafka: {name}: {text}")

    # -- state ---------------------------------------------------------------------------------

    def unreachable(self, why: str) -> None:
        if self.down_since is not None:
            return
        self.down_since = self._mono()
        self.outages += 1
        self.catching_up = False
        log.warning("kafka: broker unreachable (%s); events stay in the spool until it is back",
                    " ".join(why.split())[:160])

    def delivered(self, backlog: int) -> None:
        """Deliveries were acknowledged: the broker is reachable."""
        if self.down_since is None:
            return
        log.warning("kafka: broker reachable again after %.0f s; sending the backlog of %d events",
                    self._mono() - self.down_since, backlog)
        self.down_since = None
        self.catching_up = True

    def _once(self, level: int, text: str) -> None:
        key = _DIGITS.sub("#", text)
        now = self._mono()
        if now - self._said.get(key, -1e18) >= self.repeat_s:
            self._said[key] = now
            log.log(level, "%s", text[:300])


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
