"""Huawei Ascend NPUs of this host as a pool, from the `npu-smi info` tables. I/O: runs npu-smi.

`parse_npu_smi` is pure (tested on recorded outputs). The device table lists each NPU as a row
(`id name | health | power temp hugepages`) followed by one row per chip (`chip [device|phy-id]
| bus-id | aicore% memory [hbm]`); an Atlas A3 repeats the NPU row once per die. Devices are
counted as the catalogue counts them (agents.collectors.identify): a chip each, or one per NPU
id for a two-die 910C package. The process table marks chips in use. A device is online when
the health of each of its chips is OK or Warning, allocated when a process runs on it or its AI
cores are busy; busy_ratio is the mean AICore % of the online chips. A row or figure that cannot
be read is skipped or unknown, with a warning, and the other rows are used.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from agents.collectors import Collected, CollectorError, DevicePoolCollector, Parsed, invalid
from agents.collectors.identify import dies_per_device, identify_ascend
from agents.records import build
from schemas.events import Capacity

COMMAND = ("npu-smi", "info")
_NPU = re.compile(r"^(\d+)\s+(\S+)$")
_CHIP = re.compile(r"^(\d+)(?:\s+\d+)?$")
_BUS = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_PROC = re.compile(r"^(\d+)\s+(\d+)$")
_PAIR = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
HEALTHY = {"OK", "Warning"}


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


def parse_npu_smi(text: str) -> Parsed[Chip]:
    """Chips from `npu-smi info`, with the rows skipped. CollectorError when there is no chip."""
    rows = [(n, _cells(line)) for n, line in enumerate(text.splitlines(), 1)
            if line.lstrip().startswith("|")]
    chips: list[Chip] = []
    skipped: list[str] = []
    busy: set[tuple[int, int]] = set()
    npu: tuple[int, str, str] | None = None  # the NPU row whose chip rows come next
    waiting = False  # an NPU row not yet followed by a chip row
    in_processes = False
    for number, cells in rows:
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
                skipped.append(f"line {number}: chip row {cells[0]!r} before any NPU row; skipped")
                continue
            chip, warning = _chip(npu, int(chip_match.group(1)), cells[2], number)
            chips.append(chip)
            if warning:
                skipped.append(warning)
            waiting = False
        elif npu_match and not npu_match.group(2).isdigit():
            if waiting and npu is not None:
                skipped.append(f"NPU {npu[0]} has no chip row; skipped")
            npu, waiting = (int(npu_match.group(1)), npu_match.group(2), cells[1]), True
    if waiting and npu is not None:
        skipped.append(f"NPU {npu[0]} has no chip row (truncated output?); skipped")
    if not chips:
        why = f" ({skipped[0]})" if skipped else ""
        raise CollectorError(f"npu-smi info: no NPU rows found (not the `npu-smi info` table?){why}")
    return Parsed([Chip(c.npu, c.chip, c.name, c.health, c.aicore_pct, c.hbm_used_mb,
                        c.hbm_total_mb, (c.npu, c.chip) in busy) for c in chips], skipped)


def _chip(npu: tuple[int, str, str], chip: int, usage: str, line: int) -> tuple[Chip, str | None]:
    """A chip row's figures; a figure that cannot be read is unknown, with a warning."""
    tokens = usage.split()
    warning = None
    aicore: float | None = None
    if tokens and tokens[0] not in ("NA", "-", "N/A"):
        try:
            aicore = float(tokens[0])
        except ValueError:
            warning = f"line {line}: NPU {npu[0]} chip {chip} AICore(%) is {tokens[0][:20]!r} (unknown)"
    pairs = _PAIR.findall(usage)
    used = total = None
    if pairs:
        used, total = (float(v) for v in pairs[-1])  # HBM when shown, else device memory
    elif warning is None:
        warning = f"line {line}: NPU {npu[0]} chip {chip}: no `used / total` memory (unknown)"
    return Chip(npu[0], chip, npu[1], npu[2], aicore, used, total), warning


def device_model_of(name: str, dies_per_npu: int = 1) -> str | None:
    """The catalogue id of an npu-smi `Name`, or None."""
    try:
        return identify_ascend(name, dies_per_npu=dies_per_npu).device_model
    except CollectorError:
        return None


class AscendCollector(DevicePoolCollector[Chip]):
    """Capacity of this host's Ascend NPUs: one pool per model, devices counted as the catalogue
    counts them (an Atlas A3 910C is one device of two dies)."""

    name = "ascend"

    COMMAND = COMMAND

    def parse(self, output: str) -> Parsed[Chip]:
        return parse_npu_smi(output)

    def events(self, parsed: Parsed[Chip], now: datetime) -> Collected:
        warnings = list(parsed.skipped)
        dies = Counter(c.npu for c in parsed.devices)
        by_model: dict[str, list[Chip]] = defaultdict(list)
        refused: list[str] = []
        for chip in parsed.devices:
            try:
                model = self.device_model or identify_ascend(
                    chip.name, dies_per_npu=dies[chip.npu]).device_model
            except CollectorError as exc:
                if str(exc) not in refused:
                    refused.append(str(exc))
                continue
            by_model[model].append(chip)
        if not by_model:
            raise CollectorError(refused[0], collector=self.name)
        warnings += [f"{r}; skipped" for r in refused]
        out = []
        for i, (model, chips) in enumerate(sorted(by_model.items())):
            pool = self.pool_id if len(by_model) == 1 else f"{self.pool_id}-{i + 1}"
            devices = _devices(chips, dies_per_device(model))
            online = [d for d in devices if all(c.online for c in d)]
            loads = [c.aicore_pct for d in online for c in d if c.aicore_pct is not None]
            busy = min(1.0, round(sum(loads) / len(loads) / 100, 4)) if loads else None
            allocated = sum(1 for d in online if any(c.in_use or (c.aicore_pct or 0) > 0 for c in d))
            try:
                data = Capacity(dc_id=self.dc_id, pool_id=pool, device_model=model,
                                devices_total=len(devices), devices_online=len(online),
                                devices_allocated=allocated, busy_ratio=busy,
                                interval_s=self._interval)
            except ValidationError as exc:
                warnings.append(f"pool {pool}: {invalid(exc)}; skipped")
                continue
            out.append(build("cpn.capacity.v1", now, data, subject=pool))
        return Collected(out, warnings)


def _devices(chips: list[Chip], dies: int) -> list[list[Chip]]:
    """Chips grouped into devices: one per chip, or one per NPU id when a device has several dies."""
    if dies == 1:
        return [[c] for c in chips]
    grouped: dict[int, list[Chip]] = defaultdict(list)
    for c in chips:
        grouped[c.npu].append(c)
    return list(grouped.values())
