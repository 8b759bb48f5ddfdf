"""Default alert thresholds from the reference data: hub PUE targets, the green-share target. Pure data.

Source: ../shared/reference/catalogue.json (`hubs[].pue_target`), which cites the NDRC approval
letters of February 2022 (eastern hubs <= 1.25, western hubs <= 1.2); the green-electricity
target (> 80 % for new DCs in hub nodes) is from the NDRC/MIIT/NEA/NDA "Special action plan for
green and low-carbon data centers" (July 2024). A DC under hub `none` gets the national
average PUE target of that plan (< 1.5).
"""

from __future__ import annotations

PUE_TARGET_BY_HUB: dict[str, float] = {
    "jjj": 1.25,
    "yrd": 1.25,
    "gba": 1.25,
    "cy": 1.25,
    "nm": 1.2,
    "gz": 1.2,
    "gs": 1.2,
    "nx": 1.2,
}
PUE_TARGET_NATIONAL = 1.5
GREEN_SHARE_TARGET = 0.8


def pue_target(hub: str) -> float:
    """The PUE a hub's DCs must stay at or below (hub `none`: the national average target)."""
    return PUE_TARGET_BY_HUB.get(hub, PUE_TARGET_NATIONAL)
