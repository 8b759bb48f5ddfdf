"""This host's CPU cores as one pool: cores online and busy share from /proc/stat. I/O: file reads.

`parse_proc_stat` is pure (tested on recorded files). Busy share is the change in busy jiffies
over the change in all jiffies between two reads (since boot on the first read); the cores
allocated are the busy share of the online cores, rounded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agents.collectors import Collected, CollectorError
from agents.records import build
from schemas.events import Capacity

_CPU_LINE = re.compile(r"^cpu(\d+)\s")
PRESENT = Path("/sys/devices/system/cpu/present")


def parse_proc_stat(text: str) -> dict[int, tuple[int, int]]:
    """Per online CPU: (busy jiffies, all jiffies). CollectorError if the text is not /proc/stat."""
    cpus: dict[int, tuple[int, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _CPU_LINE.match(line)
        if not match:
            continue
        fields = line.split()[1:]
        if len(fields) < 4:
            raise CollectorError(f"/proc/stat line {number}: {len(fields)} fields for "
                                 f"cpu{match.group(1)}, expected at least 4 (truncated?)")
        try:
            values = [int(v) for v in fields[:8]]
        except ValueError:
            raise CollectorError(f"/proc/stat line {number}: a non-numeric field in "
                                 f"{line.strip()[:60]!r}") from None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values)  # user..steal; guest time is already counted in user
        cpus[int(match.group(1))] = (total - idle, total)
    if not cpus:
        raise CollectorError("/proc/stat has no per-CPU lines (cpu0, cpu1, ...)")
    return cpus


def parse_cpu_list(text: str) -> int:
    """How many CPUs a sysfs list like `0-7,16-23` names."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            count += (int(hi) if hi else int(lo)) - int(lo) + 1
        except ValueError:
            raise CollectorError(f"CPU list {text.strip()[:40]!r} is not like 0-7,16-23") from None
    return count


class LinuxCollector:
    """Capacity of this host's cores (catalogue CPU model, unit = core)."""

    name = "linux"

    def __init__(self, dc_id: str, pool_id: str, device_model: str, interval_s: int, *,
                 proc_stat: Path = Path("/proc/stat"), present: Path = PRESENT,
                 read: Callable[[Path], str] | None = None) -> None:
        self.dc_id, self.pool_id, self.device_model = dc_id, pool_id, device_model
        self.interval_s = float(interval_s)
        self._interval = interval_s
        self.proc_stat, self.present = proc_stat, present
        self._read = read or (lambda p: p.read_text())
        self._last: dict[int, tuple[int, int]] | None = None

    def _text(self, path: Path) -> str:
        try:
            return self._read(path)
        except OSError as exc:
            raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from None

    def collect(self, now: datetime) -> Collected:
        try:
            return self._collect(now)
        except CollectorError as exc:
            raise CollectorError(str(exc), collector=self.name) from None

    def _collect(self, now: datetime) -> Collected:
        cpus = parse_proc_stat(self._text(self.proc_stat))
        try:
            total = max(parse_cpu_list(self._text(self.present)), len(cpus))
        except CollectorError:
            total = max(os.cpu_count() or 0, len(cpus))
        busy = self._busy(cpus)
        online = len(cpus)
        data = Capacity(dc_id=self.dc_id, pool_id=self.pool_id, device_model=self.device_model,
                        devices_total=total, devices_online=online,
                        devices_allocated=min(online, round(busy * online)),
                        busy_ratio=round(busy, 4), interval_s=self._interval)
        return Collected([build("cpn.capacity.v1", now, data, subject=self.pool_id)],
                         commit=lambda: setattr(self, "_last", cpus))

    def _busy(self, cpus: dict[int, tuple[int, int]]) -> float:
        last = self._last or {}
        busy = total = 0
        for cpu, (b, t) in cpus.items():
            b0, t0 = last.get(cpu, (0, 0))
            if t < t0:  # counters went back (CPU re-onlined): count since boot
                b0, t0 = 0, 0
            busy += b - b0
            total += t - t0
        return min(1.0, max(0.0, busy / total)) if total > 0 else 0.0
