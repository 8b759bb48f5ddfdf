"""NVIDIA GPUs of this host as pools, from `nvidia-smi --query-gpu` CSV. I/O: runs nvidia-smi.

`parse_nvidia_smi` is pure (tested on recorded outputs). A GPU whose readings are errors
(`[GPU requires reset]`, `[Unknown Error]`, `ERR!`) is listed but not online; a GPU is allocated
when a process holds memory on it (over 2 % or 512 MiB) or it is busy; busy_ratio is the mean
utilisation of the online GPUs. Names map to catalogue ids (override with `device_model`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from agents.collectors import CollectorError, DevicePoolCollector
from agents.records import CloudEvent, build
from schemas.events import Capacity

QUERY = "index,name,uuid,utilization.gpu,memory.used,memory.total,power.draw"
COMMAND = ("nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits")
NOT_AVAILABLE = {"[N/A]", "N/A", "[Not Supported]"}
BROKEN = ("[GPU requires reset]", "[Unknown Error]", "ERR!", "[GPU is lost]")
MODELS = (  # (pattern on the nvidia-smi name, catalogue id), first match wins
    (r"H100.*PCIe", "nvidia-h100-pcie-80gb"), (r"H100", "nvidia-h100-sxm5-80gb"),
    (r"H800", "nvidia-h800-sxm5-80gb"), (r"H20\b", "nvidia-h20-96gb"),
    (r"A100", "nvidia-a100-sxm4-80gb"), (r"A800", "nvidia-a800-sxm4-80gb"),
    (r"L40S", "nvidia-l40s-48gb"), (r"L20\b", "nvidia-l20-48gb"),
    (r"RTX 4090", "nvidia-rtx-4090"), (r"V100", "nvidia-v100-sxm2-32gb"),
)


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

    @property
    def in_use(self) -> bool:
        used, total = self.memory_used_mib or 0.0, self.memory_total_mib or 0.0
        return self.online and ((self.util_pct or 0) >= 5 or used > max(512.0, 0.02 * total))


def _number(text: str, what: str, line: int) -> float | None:
    if text in NOT_AVAILABLE:
        return None
    try:
        return float(text)
    except ValueError:
        raise CollectorError(f"nvidia-smi line {line}: {what} is {text[:30]!r}, not a number") from None


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from the CSV (no header, no units). CollectorError on anything else."""
    gpus: list[Gpu] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.strip().startswith("No devices were found"):
            raise CollectorError("nvidia-smi found no NVIDIA devices")
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 7:
            raise CollectorError(f"nvidia-smi line {number}: {len(fields)} fields, expected 7 "
                                 f"({QUERY}); truncated or another --query-gpu?")
        index, name, uuid, util, used, total, power = fields
        if not index.isdigit():
            raise CollectorError(f"nvidia-smi line {number}: index {index[:20]!r} is not a number")
        broken = any(f in BROKEN for f in fields[3:])
        values = [None if broken or f in BROKEN else _number(f, what, number)
                  for f, what in ((util, "utilization.gpu"), (used, "memory.used"),
                                  (total, "memory.total"), (power, "power.draw"))]
        gpus.append(Gpu(int(index), name, uuid, not broken, *values))
    if not gpus:
        raise CollectorError("nvidia-smi printed no GPU lines")
    return gpus


def device_model_of(name: str) -> str | None:
    for pattern, model in MODELS:
        if re.search(pattern, name):
            return model
    return None


class NvidiaCollector(DevicePoolCollector[Gpu]):
    """Capacity of this host's GPUs, one pool per model (`pool_id`, or `pool_id-<n>` if mixed)."""

    name = "nvidia"

    COMMAND = COMMAND

    def parse(self, output: str) -> list[Gpu]:
        return parse_nvidia_smi(output)

    def events(self, gpus: list[Gpu], now: datetime) -> list[CloudEvent]:
        by_model: dict[str, list[Gpu]] = defaultdict(list)
        for gpu in gpus:
            model = self.device_model or device_model_of(gpu.name)
            if model is None:
                raise CollectorError(f"unknown GPU {gpu.name!r}: set collectors.nvidia.device_model "
                                     "to its catalogue id")
            by_model[model].append(gpu)
        out = []
        for i, (model, group) in enumerate(sorted(by_model.items())):
            pool = self.pool_id if len(by_model) == 1 else f"{self.pool_id}-{i + 1}"
            online = [g for g in group if g.online]
            utils = [g.util_pct for g in online if g.util_pct is not None]
            busy = round(sum(utils) / len(utils) / 100, 4) if utils else None
            data = Capacity(dc_id=self.dc_id, pool_id=pool, device_model=model,
                            devices_total=len(group), devices_online=len(online),
                            devices_allocated=sum(1 for g in online if g.in_use),
                            busy_ratio=None if busy is None else min(1.0, busy),
                            interval_s=self._interval)
            out.append(build("cpn.capacity.v1", now, data, subject=pool))
        return out
