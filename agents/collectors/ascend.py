"""Huawei Ascend NPUs of this host as a pool, from the `npu-smi info` tables. I/O: runs npu-smi.

`parse_npu_smi` is pure (tested on recorded outputs). The device table lists each NPU as a row
(`id name | health | power temp hugepages`) followed by one row per chip (`chip [device] |
bus-id | aicore% memory [hbm]`); each chip is one device. The process table marks chips in use.
A chip is online when its NPU's health is OK or Warning, allocated when a process runs on it or
its AI cores are busy; busy_ratio is the mean AICore % of the online chips.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from agents.collectors import CollectorError, DevicePoolCollector
from agents.records import CloudEvent, build
from schemas.events import Capacity

COMMAND = ("npu-smi", "info")
_NPU = re.compile(r"^(\d+)\s+(\S+)$")
_CHIP = re.compile(r"^(\d+)(?:\s+\d+)?$")
_BUS = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_PROC = re.compile(r"^(\d+)\s+(\d+)$")
_PAIR = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
HEALTHY = {"OK", "Warning"}
MODELS = ((r"^910B(\d)", "huawei-ascend-910b{0}"), (r"^910C", "huawei-ascend-910c"),
          (r"^910", "huawei-ascend-910"), (r"^310P", "huawei-ascend-310p"))


@dataclass(frozen=True, slots=True)
class Chip:
    npu: int
    chip: int
    name: str
    health: str
    aicore_pct: float | None
    hbm_used_mb: float | None
    hbm_total_mb: float | None
    in_use: bool = False

    @property
    def online(self) -> bool:
        return self.health in HEALTHY


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_npu_smi(text: str) -> list[Chip]:
    """Chips from `npu-smi info`. CollectorError on a truncated or unrecognised table."""
    rows = [_cells(line) for line in text.splitlines() if line.lstrip().startswith("|")]
    chips: list[Chip] = []
    busy: set[tuple[int, int]] = set()
    npu: tuple[int, str, str] | None = None  # the NPU row whose chip rows come next
    waiting = False  # an NPU row not yet followed by a chip row
    in_processes = False
    for cells in rows:
        if any("Process id" in c for c in cells):
            in_processes = True
            continue
        if in_processes:
            match = _PROC.match(cells[0])
            if match and len(cells) >= 2 and cells[1].isdigit():
                busy.add((int(match.group(1)), int(match.group(2))))
            continue
        if len(cells) < 3:
            continue
        npu_match, chip_match = _NPU.match(cells[0]), _CHIP.match(cells[0])
        if chip_match and _BUS.match(cells[1]):
            if npu is None:
                raise CollectorError(f"npu-smi info: chip row {cells[0]!r} before any NPU row")
            chips.append(_chip(npu, int(chip_match.group(1)), cells[2]))
            waiting = False
        elif npu_match and not npu_match.group(2).isdigit():
            if waiting and npu is not None:
                raise CollectorError(f"npu-smi info: NPU {npu[0]} has no chip row (truncated?)")
            npu, waiting = (int(npu_match.group(1)), npu_match.group(2), cells[1]), True
    if waiting and npu is not None:
        raise CollectorError(f"npu-smi info: NPU {npu[0]} has no chip row (truncated output?)")
    if not chips:
        raise CollectorError("npu-smi info: no NPU rows found (not the `npu-smi info` table?)")
    return [Chip(c.npu, c.chip, c.name, c.health, c.aicore_pct, c.hbm_used_mb, c.hbm_total_mb,
                 (c.npu, c.chip) in busy) for c in chips]


def _chip(npu: tuple[int, str, str], chip: int, usage: str) -> Chip:
    tokens = usage.split()
    if not tokens:
        raise CollectorError(f"npu-smi info: NPU {npu[0]} chip {chip} has no AICore/memory figures")
    try:
        aicore = None if tokens[0] in ("NA", "-") else float(tokens[0])
    except ValueError:
        raise CollectorError(f"npu-smi info: NPU {npu[0]} AICore(%) is {tokens[0][:20]!r}") from None
    pairs = _PAIR.findall(usage)
    if not pairs:
        raise CollectorError(f"npu-smi info: NPU {npu[0]} chip {chip}: no `used / total` memory")
    used, total = (float(v) for v in pairs[-1])  # HBM when shown, else device memory
    return Chip(npu[0], chip, npu[1], npu[2], aicore, used, total)


def device_model_of(name: str) -> str | None:
    for pattern, model in MODELS:
        match = re.match(pattern, name)
        if match:
            return model.format(*match.groups())
    return None


class AscendCollector(DevicePoolCollector[Chip]):
    """Capacity of this host's Ascend chips as one pool."""

    name = "ascend"

    COMMAND = COMMAND

    def parse(self, output: str) -> list[Chip]:
        return parse_npu_smi(output)

    def events(self, chips: list[Chip], now: datetime) -> list[CloudEvent]:
        names = Counter(c.name for c in chips)
        model = self.device_model or device_model_of(names.most_common(1)[0][0])
        if model is None or (len(names) > 1 and self.device_model is None):
            raise CollectorError(f"NPU model {', '.join(names)} has no catalogue id: set "
                                 "collectors.ascend.device_model")
        online = [c for c in chips if c.online]
        loads = [c.aicore_pct for c in online if c.aicore_pct is not None]
        busy = min(1.0, round(sum(loads) / len(loads) / 100, 4)) if loads else None
        allocated = sum(1 for c in online if c.in_use or (c.aicore_pct or 0) > 0)
        data = Capacity(dc_id=self.dc_id, pool_id=self.pool_id, device_model=model,
                        devices_total=len(chips), devices_online=len(online),
                        devices_allocated=allocated, busy_ratio=busy, interval_s=self._interval)
        return [build("cpn.capacity.v1", now, data, subject=self.pool_id)]
