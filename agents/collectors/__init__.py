"""The collector interface (`collect(now) -> Collected`), its one-line error, and a command runner.

A collector measures one source and returns a `Collected`: schemas-valid CloudEvent dicts
(agents.records), the warnings of this turn (what it skipped, and why) and a `commit` callback
that advances its state (sequence numbers, ended jobs, last totals, counters). The agent calls
`commit` only after the spool accepted the events, so a crash or a full disk between the two
never makes a collector believe something was sent that is not safe on disk.

Rules every collector keeps: one bad row or field never blocks the other rows (the row is
skipped and named in one warning); a command that exits non-zero but printed rows is used (the
exit is a warning); every failure is a `CollectorError` naming the collector and the line, never
a stray `ValidationError`. Parsing stays pure (`parse_*` on recorded text); I/O is in
`run_command` or a file read.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from pydantic import ValidationError

from agents.records import CloudEvent


class CollectorError(Exception):
    """A collector could not measure: one line naming the collector, the line and why."""

    def __init__(self, message: str, *, collector: str | None = None, line: int | None = None) -> None:
        self.collector, self.line = collector, line
        where = "".join((f"{collector}: " if collector else "", f"line {line}: " if line else ""))
        super().__init__(" ".join(f"{where}{message}".split())[:300])


def invalid(exc: ValidationError) -> str:
    """The first problem of a model's ValidationError, as a short phrase."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    err = errors[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


def _nothing() -> None:
    return None


@dataclass
class Collected:
    """One turn of a collector: events to spool, warnings to log, and the state to commit after."""

    events: list[CloudEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    commit: Callable[[], None] = _nothing


class Collector(Protocol):
    """One source of events; `interval_s` is how often the agent calls `collect`."""

    name: str
    interval_s: float

    def collect(self, now: datetime) -> Collected | list[CloudEvent]: ...


@dataclass(frozen=True)
class Output:
    """What a command printed, and a warning when it exited non-zero but printed something."""

    stdout: str
    warning: str | None = None


def run_command(argv: Sequence[str], timeout_s: float) -> Output:
    """Run a command: its stdout, or a CollectorError naming the command and its first error line.

    A non-zero exit with output on stdout is not an error (real tools print their good rows and
    fail on one device or one job): the output is returned with a warning naming the exit.
    """
    tool = argv[0]
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                              check=False, errors="replace")
    except FileNotFoundError:
        raise CollectorError(f"{tool} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{tool} did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise CollectorError(f"cannot run {tool}: {exc.strerror or exc}") from None
    if done.returncode == 0:
        return Output(done.stdout)
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    first = lines[0] if lines else "no output"
    if done.stdout.strip():
        return Output(done.stdout, f"{tool} exited with {done.returncode} ({first[:120]}); "
                                   "using the rows it printed")
    raise CollectorError(f"{tool} exited with {done.returncode}: {first}")


Device = TypeVar("Device")


@dataclass
class Parsed(Generic[Device]):
    """Devices read from a tool's output, the lines skipped (as warnings), devices known lost."""

    devices: list[Device]
    skipped: list[str] = field(default_factory=list)
    lost: int = 0  # devices the tool named as lost without a row (not online)


class DevicePoolCollector(Generic[Device]):
    """Base of the collectors that read one host tool's output into capacity pools (nvidia,
    ascend): `collect` runs `command`, parses it and hands the devices to `events`."""

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

    def parse(self, output: str) -> Parsed[Device]:
        raise NotImplementedError

    def events(self, parsed: Parsed[Device], now: datetime) -> Collected:
        raise NotImplementedError

    def collect(self, now: datetime) -> Collected:
        out = run_command(self.command, self.timeout_s)
        try:
            result = self.events(self.parse(out.stdout), now)
        except CollectorError as exc:
            if exc.collector is None:
                raise CollectorError(str(exc), collector=self.name) from None
            raise
        if out.warning:
            result.warnings.insert(0, out.warning)
        return result
