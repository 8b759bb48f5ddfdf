"""Reference figures the simulator draws on (copied, with their sources, from schemas/reference). Pure.

Grid: 2022 provincial CO2 factors (MEE/NBS, official) and in-province generation mixes (estimates
±5-10 pp except Inner Mongolia 2022, official). `grid_renewable_share` = hydro + wind + solar;
nuclear is low-carbon but not renewable and is left out. Allocation curves: Helios Earth (hourly
and by weekday, allocated/total GPUs) and recommended profiles of domain-data.md §5.2. Jobs:
AcmeTrace `cluster_summary.csv` (median 1 GPU, heavy tails; status proportions averaged over
Seren, Kalos, Philly and Helios by count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Grid:
    name: str
    hub: str
    ef_kg_per_kwh: float  # 2022 provincial average (MEE/NBS)
    hydro: float
    wind: float
    solar: float

    @property
    def renewable_share(self) -> float:
        return self.hydro + self.wind + self.solar


NATIONAL: Final = Grid("National", "none", 0.5366, 0.0, 0.15, 0.0)  # wind+solar ~15 %; hydro not given
GRIDS: Final = {
    "CN-BJ": Grid("Beijing", "jjj", 0.5580, 0.01, 0.01, 0.03),
    "CN-TJ": Grid("Tianjin", "jjj", 0.7041, 0.00, 0.03, 0.05),
    "CN-HE": Grid("Hebei", "jjj", 0.7252, 0.01, 0.16, 0.11),
    "CN-SH": Grid("Shanghai", "yrd", 0.5849, 0.00, 0.02, 0.04),
    "CN-JS": Grid("Jiangsu", "yrd", 0.5978, 0.01, 0.11, 0.07),
    "CN-ZJ": Grid("Zhejiang", "yrd", 0.5153, 0.05, 0.03, 0.09),
    "CN-AH": Grid("Anhui", "yrd", 0.6782, 0.02, 0.04, 0.08),
    "CN-GD": Grid("Guangdong", "gba", 0.4403, 0.04, 0.07, 0.05),
    "CN-SC": Grid("Sichuan", "cy", 0.1404, 0.79, 0.03, 0.02),
    "CN-CQ": Grid("Chongqing", "cy", 0.5227, 0.23, 0.03, 0.02),
    "CN-NM": Grid("Inner Mongolia", "nm", 0.6849, 0.006, 0.158, 0.025),
    "CN-GZ": Grid("Guizhou", "gz", 0.4989, 0.27, 0.04, 0.06),
    "CN-GS": Grid("Gansu", "gs", 0.4772, 0.17, 0.21, 0.13),
    "CN-NX": Grid("Ningxia", "nx", 0.6423, 0.01, 0.11, 0.13),
}

# Helios Earth: allocated/total GPUs by local hour (UTC+8) and by weekday Mon..Sun (mean 0.667)
HELIOS_BY_HOUR: Final = (0.695, 0.689, 0.678, 0.669, 0.659, 0.649, 0.637, 0.629, 0.623, 0.62,
                         0.629, 0.658, 0.668, 0.671, 0.651, 0.661, 0.68, 0.686, 0.688, 0.69,
                         0.691, 0.694, 0.694, 0.696)
HELIOS_BY_WEEKDAY: Final = (0.646, 0.676, 0.708, 0.722, 0.717, 0.701, 0.516)
HELIOS_MEAN: Final = 0.667
PROFILE_MEAN: Final = {"training": 0.68, "inference": 0.45, "cloud": 0.40, "batch": 0.55}

# job sizes: (devices, probability); median 1, mean ~4.9 GPUs; CPU jobs in cores
GPU_SIZES: Final = ((1, 0.60), (2, 0.10), (4, 0.10), (8, 0.12), (16, 0.04), (32, 0.025),
                    (64, 0.01), (128, 0.005))
CPU_SIZES: Final = ((1, 0.25), (2, 0.20), (4, 0.20), (8, 0.15), (16, 0.10), (32, 0.06), (64, 0.04))
# durations: log-normal (median s, sigma); sized jobs run longer by size ** SIZE_EXPONENT
DURATION: Final = {"training": (240.0, 2.0), "inference": (900.0, 1.2), "cloud": (600.0, 1.5),
                   "batch": (1200.0, 1.2)}
SIZE_EXPONENT: Final = 0.3
MIN_DURATION_S: Final = 20.0
MAX_DURATION_S: Final = 3 * 86_400.0
# end status by count (mean of Seren, Kalos, Philly, Helios): succeeded / failed / cancelled
STATUS: Final = (("succeeded", 0.57), ("failed", 0.31), ("cancelled", 0.12))
JOB_BUSY: Final = {"training": 0.85, "inference": 0.5, "cloud": 0.6, "batch": 0.7}

# power: P = TDP * (IDLE + (1 - IDLE) * u ** 0.9); server = overhead * device power (§5.3)
IDLE_FRACTION: Final = 0.12
SERVER_OVERHEAD: Final = {"device": 1.35, "core": 1.25}

# tenants of several kinds: a rural school, a startup, a university lab, a foreign company, ...
TENANTS: Final = ("rural-school", "acme-ai", "uni-nlp-lab", "foreign-co", "bio-sim", "auto-drive",
                  "fin-risk", "weather-hpc", "game-render", "gov-cloud", "med-imaging", "edu-mooc")


def grid_of(province: str) -> Grid:
    return GRIDS.get(province, NATIONAL)


def solar_shape(local_hour: float) -> float:
    """Solar output by local hour, 0 at night, averaging 1 over a day."""
    if not 6.0 <= local_hour <= 18.0:
        return 0.0
    return math.pi * math.sin(math.pi * (local_hour - 6.0) / 12.0)


def allocation_target(profile: str, mean: float, local_hour: float, weekday: int) -> float:
    """Target allocated share for a profile at a local hour (0-24) and weekday (0 = Monday)."""
    if profile == "training":
        lo = HELIOS_BY_HOUR[int(local_hour) % 24]
        hi = HELIOS_BY_HOUR[(int(local_hour) + 1) % 24]
        hourly = lo + (hi - lo) * (local_hour % 1.0)
        return _clip(mean * hourly / HELIOS_MEAN * HELIOS_BY_WEEKDAY[weekday] / HELIOS_MEAN)
    weekend = 0.95 if weekday >= 5 else 1.0
    if profile == "batch":  # western DCs: flat with a nightly batch bump 01:00-05:00
        bump = 0.2 if 1.0 <= local_hour < 5.0 else 0.0
        return _clip((mean + bump) * weekend)
    amplitude = 0.30 if profile == "cloud" else 0.45  # cloud ±12 pp at 0.40; inference 2-3x
    phase = math.cos(2 * math.pi * (local_hour - 21.0) / 24.0)  # peak 21:00, trough 09:00
    return _clip(mean * (1 + amplitude * phase) * weekend)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def device_power_w(tdp_w: float, busy: float) -> float:
    return float(tdp_w * (IDLE_FRACTION + (1 - IDLE_FRACTION) * busy ** 0.9))
