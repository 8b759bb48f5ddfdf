"""The collector interface (`collect(now) -> events`), its one-line error, and a command runner.

A collector measures one source and returns schemas-valid CloudEvent dicts (agents.records).
It fails alone: `CollectorError` (or any exception) is logged as one line and the collector is
retried on its next turn, while the others go on. Real collectors keep parsing pure (`parse_*`
functions on recorded text) and do I/O only in `run_command` or a file read.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from agents.records import CloudEvent


class CollectorError(Exception):
    """A collector could not measure: one line saying what and why (no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split())[:300])


class Collector(Protocol):
    """One source of events; `interval_s` is how often the agent calls `collect`."""

    name: str
    interval_s: float

    def collect(self, now: datetime) -> list[CloudEvent]: ...


def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """stdout of a command, or a CollectorError naming the command and its first error line."""
    tool = argv[0]
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except FileNotFoundError:
        raise CollectorError(f"{tool} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{tool} did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise CollectorError(f"cannot run {tool}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise CollectorError(f"{tool} exited with {done.returncode}: "
                             f"{lines[0].strip() if lines else 'no output'}")
    return done.stdout


Device = TypeVar("Device")


class DevicePoolCollector(Generic[Device]):
    """Base of the collectors that read one host tool's output into a capacity pool (nvidia, ascend):
    `collect` runs `command` and hands its parsed output to `events`."""

    name = "device-pool"
    COMMAND: tuple[str, ...] = ()

    def __init__(self, dc_id: str, pool_id: str, interval_s: int, *,
                 device_model: str | None = None, command: list[str] | None = None,
                 timeout_s: float = 10.0) -> None:
        self.dc_id, self.pool_id, self.device_model = dc_id, pool_id, device_model
        self.interval_s = float(interval_s)
        self._interval = interval_s
        self.command = command or list(self.COMMAND)
        self.timeout_s = timeout_s

    def parse(self, output: str) -> list[Device]:
        raise NotImplementedError

    def events(self, devices: list[Device], now: datetime) -> list[CloudEvent]:
        raise NotImplementedError

    def collect(self, now: datetime) -> list[CloudEvent]:
        return self.events(self.parse(run_command(self.command, self.timeout_s)), now)
