"""Estimated round-trip time from a province's capital to a data center (SPEC §8). Pure.

The distance model, its constants and their sources are in `schemas/reference/network_latency.toml`;
the province capitals (ISO 3166-2:CN, all 34 provincial-level divisions) in
`schemas/reference/provinces.toml`:

    rtt_ms = fixed_overhead_ms + 2 * great_circle_km * route_factor / fibre_km_per_ms

with fibre at c / 1.468 (204.2 km per ms), a route factor of 1.1 (the hub backbone, inside the
1.5x cap of the 2023 plan) and 0.4 ms of equipment at both ends. A test checks it against the
published targets: hub to hub <= 20 ms, a cluster to its nearby city <= 5 ms.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent.parent / "schemas" / "reference"
PROVINCES_FILE = REFERENCE / "provinces.toml"
LATENCY_FILE = REFERENCE / "network_latency.toml"


@dataclass(frozen=True, slots=True)
class Province:
    code: str  # ISO 3166-2:CN, e.g. CN-SH
    name: str
    capital: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class DistanceModel:
    fibre_km_per_ms: float
    route_factor: float
    fixed_overhead_ms: float
    earth_radius_km: float

    def great_circle_km(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        """Haversine distance in km between two (lat, lon) points in degrees."""
        lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
        h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        return 2 * self.earth_radius_km * math.asin(min(1.0, math.sqrt(h)))

    def rtt_ms(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        """Estimated round trip in ms between two (lat, lon) points."""
        km = self.great_circle_km(a, b)
        return self.fixed_overhead_ms + 2 * km * self.route_factor / self.fibre_km_per_ms


@cache
def provinces() -> dict[str, Province]:
    """ISO 3166-2:CN code -> the province and its capital's coordinates."""
    raw = tomllib.loads(PROVINCES_FILE.read_text(encoding="utf-8"))
    return {p["code"]: Province(**p) for p in raw["province"]}


@cache
def distance_model() -> DistanceModel:
    raw = tomllib.loads(LATENCY_FILE.read_text(encoding="utf-8"))
    return DistanceModel(**raw["model"])


@cache
def published_targets() -> dict[str, float]:
    raw = tomllib.loads(LATENCY_FILE.read_text(encoding="utf-8"))
    return {k: float(v) for k, v in raw["targets"].items()}


def latency_ms(origin: str, lat: float, lon: float) -> float:
    """Round trip in ms from the capital of province `origin` (ISO 3166-2:CN) to (lat, lon),
    rounded to 0.1 ms; KeyError for a code that is not a provincial-level division."""
    capital = provinces()[origin]
    return round(distance_model().rtt_ms((capital.lat, capital.lon), (lat, lon)), 1)
