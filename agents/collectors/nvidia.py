"""NVIDIA GPUs of this host as pools, from `nvidia-smi --query-gpu` CSV. I/O: runs nvidia-smi.

`parse_nvidia_smi` is pure (tested on recorded outputs). Each field is read on its own: a number
(units such as `%` or `MiB` allowed), a placeholder (`[N/A]`, `[Not Supported]`, `[Insufficient
Permissions]`, any `[...]`: the figure is unknown), an error (`[Unknown Error]`, `ERR!`: unknown,
and a GPU whose every reading is an error is not online), or a lost GPU (`[GPU requires reset]`,
`[GPU is lost]`: listed, not online). A missing power reading never takes a working GPU offline.
A free-text line among the rows (`Unable to determine the device handle for GPU...`) counts one
lost GPU; any other line that is not a row is skipped with a warning, and the rows are used.

A GPU is allocated when a process holds memory on it (over 2 % or 512 MiB) or it is busy;
busy_ratio is the mean utilisation of the online GPUs whose utilisation is known. Names map to
device models through agents.collectors.identify (exact, with MIG and vGPU slices), or to the
configured `device_model`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from agents.collectors import Collected, CollectorError, DevicePoolCollector, Parsed, invalid
from agents.collectors.identify import Identified, identify_nvidia
from agents.records import build
from schemas.events import Capacity

QUERY = "index,name,uuid,utilization.gpu,memory.used,memory.total,power.draw"
QUERY_PCI = f"{QUERY},pci.device_id"
COMMAND = ("nvidia-smi", f"--query-gpu={QUERY_PCI}", "--format=csv,noheader,nounits")
READINGS = ("utilization.gpu", "memory.used", "memory.total", "power.draw")
ERRORS = frozenset({"[UNKNOWN ERROR]", "ERR!", "[ERROR]", "ERROR"})
LOST_MARKS = ("REQUIRES RESET", "GPU IS LOST", "FALLEN OFF THE BUS")
LOST_LINE = re.compile(r"unable to determine the device handle|fallen off the bus|gpu is lost",
                       re.IGNORECASE)
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:%|MiB|MB|W|MHz|C)?$")
_PCI = re.compile(r"^0x([0-9a-fA-F]{4})([0-9a-fA-F]{4})?$")


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    uuid: str
    online: bool
    util_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    power_w: float | None
    pci_device_id: int | None = None

    @property
    def in_use(self) -> bool:
        used, total = self.memory_used_mib or 0.0, self.memory_total_mib or 0.0
        return self.online and ((self.util_pct or 0) >= 5 or used > max(512.0, 0.02 * total))


class _Field:
    """One reading: its value (None when unknown) and what kind of text it was."""

    __slots__ = ("bad", "error", "lost", "value")

    def __init__(self, text: str) -> None:
        upper = text.strip().upper()
        self.value: float | None = None
        self.lost = any(mark in upper for mark in LOST_MARKS)
        self.error = upper in ERRORS
        self.bad = False
        match = _NUMBER.match(text.strip())
        if match:
            self.value = float(match.group(1))
        elif not (self.lost or self.error or upper in ("N/A", "") or upper.startswith("[")):
            self.bad = True  # free text where a number belongs: unknown, and warned about


def _pci(text: str) -> int | None:
    """`0x233010DE` (device id then vendor, as nvidia-smi prints it) -> 0x2330."""
    match = _PCI.match(text.strip())
    if not match:
        return None
    return int(match.group(1), 16) if match.group(2) else None


def parse_nvidia_smi(text: str) -> Parsed[Gpu]:
    """GPUs from the CSV (no header; units tolerated), lines skipped, GPUs reported lost.

    CollectorError only when there is no GPU row and no lost GPU at all.
    """
    gpus: list[Gpu] = []
    skipped: list[str] = []
    lost = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.strip().startswith("No devices were found"):
            raise CollectorError("nvidia-smi found no NVIDIA devices")
        if LOST_LINE.search(line):
            lost += 1
            skipped.append(f"line {number}: a GPU is lost ({line.strip()[:100]})")
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) not in (7, 8):
            skipped.append(f"line {number}: {len(fields)} fields, expected 7 ({QUERY}); "
                           f"truncated? skipped: {line.strip()[:60]!r}")
            continue
        index, name, uuid = fields[:3]
        if not index.isdigit():
            skipped.append(f"line {number}: index {index[:20]!r} is not a number; skipped")
            continue
        readings = [_Field(f) for f in fields[3:7]]
        for what, reading, raw in zip(READINGS, readings, fields[3:7], strict=True):
            if reading.bad:
                skipped.append(f"line {number}: {what} is {raw[:30]!r}, not a number (unknown)")
        online = not any(r.lost for r in readings) and not all(r.error for r in readings)
        util, used, total, power = (r.value if online else None for r in readings)
        pci = _pci(fields[7]) if len(fields) == 8 else None
        gpus.append(Gpu(int(index), name, uuid, online, util, used, total, power, pci))
    if not gpus and not lost:
        why = f": {skipped[0]}" if skipped else ""
        raise CollectorError(f"nvidia-smi printed no GPU rows{why}")
    return Parsed(gpus, skipped, lost)


def device_model_of(name: str) -> str | None:
    """The catalogue id of a whole GPU's name, or None (slices and unknown names)."""
    try:
        found = identify_nvidia(name)
    except CollectorError:
        return None
    return None if found.derived else found.device_model


class NvidiaCollector(DevicePoolCollector[Gpu]):
    """Capacity of this host's GPUs, one pool per model (`pool_id`, or `pool_id-<n>` if mixed)."""

    name = "nvidia"

    COMMAND = COMMAND

    def parse(self, output: str) -> Parsed[Gpu]:
        return parse_nvidia_smi(output)

    def _identify(self, gpu: Gpu) -> Identified:
        if self.device_model:
            return Identified(self.device_model)
        return identify_nvidia(gpu.name, pci_device_id=gpu.pci_device_id)

    def events(self, parsed: Parsed[Gpu], now: datetime) -> Collected:
        warnings = list(parsed.skipped)
        by_model: dict[str, list[Gpu]] = defaultdict(list)
        models: dict[str, Identified] = {}
        refused: list[str] = []
        for gpu in parsed.devices:
            try:
                found = self._identify(gpu)
            except CollectorError as exc:
                refused.append(f"GPU {gpu.index}: {exc}")
                continue
            models[found.device_model] = found
            by_model[found.device_model].append(gpu)
        if not by_model:
            raise CollectorError(refused[0] if refused else "no GPU to report", collector=self.name)
        warnings += [f"{r}; skipped" for r in refused]
        lost = parsed.lost
        if lost and len(by_model) > 1:
            warnings.append(f"{lost} lost GPU(s) not counted: this host has several GPU models")
            lost = 0
        out = []
        for i, (model_id, group) in enumerate(sorted(by_model.items())):
            model = models[model_id]
            pool = self.pool_id if len(by_model) == 1 else f"{self.pool_id}-{i + 1}"
            online = [g for g in group if g.online]
            utils = [g.util_pct for g in online if g.util_pct is not None]
            busy = round(sum(utils) / len(utils) / 100, 4) if utils else None
            try:
                data = Capacity(dc_id=self.dc_id, pool_id=pool, device_model=model.device_model,
                                devices_total=len(group) + lost, devices_online=len(online),
                                devices_allocated=sum(1 for g in online if g.in_use),
                                busy_ratio=None if busy is None else min(1.0, max(0.0, busy)),
                                interval_s=self._interval, peak_tflops_per_device=model.peak)
            except ValidationError as exc:
                warnings.append(f"pool {pool}: {invalid(exc)}; skipped")
                continue
            out.append(build("cpn.capacity.v1", now, data, subject=pool))
        return Collected(out, warnings)
