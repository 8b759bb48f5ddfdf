"""GPUs and NPUs as pools from the exporters data centers already run. I/O: HTTP GET of /metrics.

Scrapes NVIDIA dcgm-exporter and the Ascend MindCluster npu-exporter, parsing the text
exposition format with prometheus_client's parser; `devices_of` is pure (tested on recorded
expositions built from the exporters' documented metric names).

- dcgm-exporter (NVIDIA DCGM field ids, docs.nvidia.com/datacenter/dcgm): one device per `UUID`
  (and `GPU_I_ID` for a MIG instance, whose `GPU_I_PROFILE` makes it a derived model) with
  `modelName`; utilisation `DCGM_FI_DEV_GPU_UTIL` (%; on MIG instances
  `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, a ratio), memory `DCGM_FI_DEV_FB_USED` and `_FB_FREE` (MiB),
  power `DCGM_FI_DEV_POWER_USAGE` (W).
- npu-exporter (hiascend.com MindCluster, "Prometheus Metrics API"): one device per `id` (and
  `vdie_id`) with `model_name`; `npu_chip_info_utilization` (AICore %),
  `npu_chip_info_hbm_used_memory` and `_hbm_total_memory` (MB), `npu_chip_info_power` (W),
  `npu_chip_info_health_status` (1 healthy).

A device is online when the exporter reports it (and, for NPUs, healthy); allocated when a pod
holds it (the exporters' Kubernetes labels `pod`/`pod_name`), or by the host collectors' rule
(busy, or memory held). Models go through agents.collectors.identify, exactly. An unreachable
target or an unreadable exposition is a warning and the other targets are used.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agents.collectors import Collected, CollectorError, invalid
from agents.collectors.identify import Identified, identify_ascend, identify_nvidia, norm
from agents.records import build
from schemas.events import Capacity

DCGM = {"DCGM_FI_DEV_GPU_UTIL": "util_pct", "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "engine_ratio",
        "DCGM_FI_DEV_FB_USED": "used_mib", "DCGM_FI_DEV_FB_FREE": "free_mib",
        "DCGM_FI_DEV_POWER_USAGE": "power_w"}
NPU = {"npu_chip_info_utilization": "util_pct", "npu_chip_info_hbm_used_memory": "used_mib",
       "npu_chip_info_hbm_total_memory": "total_mib", "npu_chip_info_power": "power_w",
       "npu_chip_info_health_status": "health"}


@dataclass
class Device:
    """One GPU, MIG instance or NPU chip as the exporters describe it."""

    key: tuple[str, ...]
    vendor: str  # "nvidia" or "ascend"
    model_name: str
    mig_profile: str | None = None
    util_pct: float | None = None
    used_mib: float | None = None
    free_mib: float | None = None
    total_mib: float | None = None
    power_w: float | None = None
    healthy: bool = True
    pod: bool = False  # a pod holds it (Kubernetes labels)

    @property
    def in_use(self) -> bool:
        used, total = self.used_mib or 0.0, self.total_mib or 0.0
        if self.pod:
            return True
        if self.vendor == "ascend":
            return (self.util_pct or 0) > 0
        return (self.util_pct or 0) >= 5 or used > max(512.0, 0.02 * total)

    def identify(self) -> Identified:
        if self.vendor == "nvidia":
            return identify_nvidia(self.model_name, mig_profile=self.mig_profile)
        name = norm(self.model_name)
        name = name.removesuffix("-ASCEND-V1").removeprefix("ASCEND-")
        if name.startswith("ASCEND") and name[6:7].isdigit() and name != "ASCEND910":
            name = name[6:]
        return identify_ascend(name)


def devices_of(text: str, source: str = "exposition") -> tuple[list[Device], list[str]]:
    """Devices in one exposition (dcgm-exporter and/or npu-exporter), and warnings. Pure."""
    found: dict[tuple[str, ...], Device] = {}
    warnings: list[str] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                _sample(found, sample.name, sample.labels, sample.value)
    except ValueError as exc:  # the parser stops at a bad line: what came before is kept
        warnings.append(f"{source}: unreadable exposition after {len(found)} devices ({exc}); "
                        "the rest is skipped")
    for d in found.values():
        if d.total_mib is None and d.used_mib is not None and d.free_mib is not None:
            d.total_mib = d.used_mib + d.free_mib
    return list(found.values()), warnings


def _sample(found: dict[tuple[str, ...], Device], name: str, labels: dict[str, str], value: float) -> None:
    field = DCGM.get(name)
    if field is not None:
        key = ("nvidia", labels.get("UUID") or labels.get("gpu", "?"), labels.get("GPU_I_ID", ""))
        device = found.setdefault(key, Device(key, "nvidia", labels.get("modelName", ""),
                                               labels.get("GPU_I_PROFILE") or None))
    else:
        field = NPU.get(name)
        if field is None:
            return
        key = ("ascend", labels.get("id", "?"), labels.get("vdie_id", ""))
        device = found.setdefault(key, Device(key, "ascend", labels.get("model_name", "")))
    if labels.get("pod") or labels.get("pod_name"):
        device.pod = True
    if field == "engine_ratio":
        device.util_pct = value * 100 if device.util_pct is None else device.util_pct
    elif field == "health":
        device.healthy = value == 1
    else:
        setattr(device, field, value)


def scrape(url: str, timeout_s: float) -> str:
    """The body of `url` (http, https or file), or a CollectorError naming it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (configured URLs)
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        raise CollectorError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CollectorError(f"cannot scrape {url}: {reason}") from None
    return body.decode("utf-8", errors="replace")


class PrometheusCollector:
    """Capacity of the devices the configured exporters report, one pool per model."""

    name = "prometheus"

    def __init__(self, dc_id: str, pool_id: str, interval_s: int, urls: list[str], *,
                 device_model: str | None = None, timeout_s: float = 5.0) -> None:
        self.dc_id, self.pool_id, self.urls = dc_id, pool_id, list(urls)
        self.device_model, self.timeout_s = device_model, timeout_s
        self.interval_s = float(interval_s)
        self._interval = interval_s

    def collect(self, now: datetime) -> Collected:
        devices: list[Device] = []
        warnings: list[str] = []
        failed: list[str] = []
        for url in self.urls:
            try:
                found, said = devices_of(scrape(url, self.timeout_s), url)
            except CollectorError as exc:
                failed.append(str(exc))
                continue
            devices += found
            warnings += said
        if not devices:
            why = failed[0] if failed else "the exporters report no GPU or NPU"
            raise CollectorError(why, collector=self.name)
        return self.events(devices, now, [*failed, *warnings])

    def events(self, devices: list[Device], now: datetime, warnings: list[str] | None = None) -> Collected:
        """Capacity events for devices (from `devices_of`), one pool per device model. Pure."""
        warnings = list(warnings or [])
        groups: dict[str, list[Device]] = defaultdict(list)
        models: dict[str, Identified] = {}
        for device in devices:
            try:
                found = Identified(self.device_model) if self.device_model else device.identify()
            except CollectorError as exc:
                warnings.append(f"device {'/'.join(k for k in device.key if k)}: {exc}; skipped")
                continue
            models[found.device_model] = found
            groups[found.device_model].append(device)
        if not groups:
            raise CollectorError(warnings[-1], collector=self.name)
        out = []
        for i, (model_id, group) in enumerate(sorted(groups.items())):
            pool = self.pool_id if len(groups) == 1 else f"{self.pool_id}-{i + 1}"
            online = [d for d in group if d.healthy]
            utils = [d.util_pct for d in online if d.util_pct is not None]
            busy = round(sum(utils) / len(utils) / 100, 4) if utils else None
            try:
                data = Capacity(dc_id=self.dc_id, pool_id=pool, device_model=model_id,
                                devices_total=len(group), devices_online=len(online),
                                devices_allocated=sum(1 for d in online if d.in_use),
                                busy_ratio=None if busy is None else min(1.0, max(0.0, busy)),
                                interval_s=self._interval,
                                peak_tflops_per_device=models[model_id].peak)
            except ValidationError as exc:
                warnings.append(f"pool {pool}: {invalid(exc)}; skipped")
                continue
            out.append(build("cpn.capacity.v1", now, data, subject=pool))
        return Collected(out, warnings)
