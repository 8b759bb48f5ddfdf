"""The device catalogue (SPEC §3.1): `device_model` id -> peak dense TFLOPS per device. Pure data.

Loaded from the versioned data file `schemas/devices.toml`; every entry names its source and
whether its figures are vendor-published or estimated. For CPUs `unit = "core"`: a pool's
devices are cores and the peaks are per core.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

DEVICES_FILE = Path(__file__).with_name("devices.toml")
PRECISIONS = ("fp16", "fp32", "fp64")
# TOML has no null: an optional figure left out of an entry means "unknown" (None).
OPTIONAL_FIELDS = ("fp16", "fp32", "fp64", "memory_gb", "tdp_w")


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    vendor: str
    model: str
    kind: Literal["accelerator", "cpu"]
    unit: Literal["device", "core"]
    fp16: float | None
    fp32: float | None
    fp64: float | None
    memory_gb: float | None
    tdp_w: float | None
    figures: Literal["vendor", "estimated"]
    source: str
    reference_id: str
    notes: str = ""

    def peak(self, precision: str) -> float:
        """Peak TFLOPS per unit for a precision; 0 where the vendor publishes none."""
        value = getattr(self, precision)
        return float(value) if value is not None else 0.0


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    devices: dict[str, Device]

    def get(self, device_model: str) -> Device | None:
        return self.devices.get(device_model)

    def __contains__(self, device_model: object) -> bool:
        return device_model in self.devices

    def __len__(self) -> int:
        return len(self.devices)


def parse_catalogue(text: str) -> Catalogue:
    raw = tomllib.loads(text)
    devices: dict[str, Device] = {}
    for entry in raw["device"]:
        device = Device(**{**dict.fromkeys(OPTIONAL_FIELDS), **entry})
        if device.id in devices:
            raise ValueError(f"duplicate device id {device.id!r} in the catalogue")
        devices[device.id] = device
    return Catalogue(version=str(raw["version"]), devices=devices)


@cache
def load_catalogue(path: Path = DEVICES_FILE) -> Catalogue:
    return parse_catalogue(path.read_text(encoding="utf-8"))
