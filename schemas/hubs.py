"""The eight national computing hubs: ids, names, roles and energy targets. Pure data.

The one definition the event schema (`cpn.dc.v1` `hub`), the report, its charts, the alert rules
and the Grafana boards (by a test) use. Copied from schemas/reference/catalogue.json `hubs`
(which cites the NDRC approval letters of February 2022: PUE <= 1.25 for the eastern hubs'
clusters, <= 1.2 for the western); tests/unit/test_hubs.py keeps this table equal to that file.
The green-electricity target (> 80 % for new DCs in hub nodes) and the national average PUE
target (< 1.5, used for DCs outside the hubs) are from the NDRC/MIIT/NEA/NDA "Special action
plan for green and low-carbon data centers" (July 2024), schemas/reference/domain-data.md §1.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

# the hub a DC registers under; `none` is a DC outside the eight hubs
HubId = Literal["jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx", "none"]
HUB_IDS: Final[tuple[str, ...]] = get_args(HubId)
NO_HUB: Final = "none"


@dataclass(frozen=True, slots=True)
class Hub:
    """A national hub: `pue_target` is the PUE its clusters must stay at or below (None: no hub)."""

    id: str
    name: str  # English, as in the reference: "Guizhou hub"
    name_zh: str
    role: Literal["east", "west", "none"]  # east = demand side, west = supply side
    pue_target: float | None

    @property
    def short_name(self) -> str:
        """The name without " hub" (chart legends): "Guizhou"."""
        return self.name.removesuffix(" hub")


HUBS: Final[dict[str, Hub]] = {
    h.id: h
    for h in (
        Hub("jjj", "Beijing-Tianjin-Hebei hub", "京津冀枢纽", "east", 1.25),
        Hub("yrd", "Yangtze River Delta hub", "长三角枢纽", "east", 1.25),
        Hub("gba", "Guangdong-Hong Kong-Macao Greater Bay Area hub", "粤港澳大湾区枢纽", "east", 1.25),
        Hub("cy", "Chengdu-Chongqing hub", "成渝枢纽", "east", 1.25),
        Hub("nm", "Inner Mongolia hub", "内蒙古枢纽", "west", 1.2),
        Hub("gz", "Guizhou hub", "贵州枢纽", "west", 1.2),
        Hub("gs", "Gansu hub", "甘肃枢纽", "west", 1.2),
        Hub("nx", "Ningxia hub", "宁夏枢纽", "west", 1.2),
        Hub(NO_HUB, "outside the hubs", "枢纽外", "none", None),
    )
}
PUE_TARGET_BY_HUB: Final[dict[str, float]] = {
    h.id: h.pue_target for h in HUBS.values() if h.pue_target is not None
}
PUE_TARGET_NATIONAL: Final = 1.5  # average PUE of all DCs, end-2025 (2024 action plan)
GREEN_SHARE_TARGET: Final = 0.8  # green electricity share of hub DCs (2024 action plan)


def hub_name(hub: str) -> str:
    """The English name of a hub id; an unknown id is its own name."""
    found = HUBS.get(hub)
    return found.name if found else hub


def pue_limit(hub: str) -> float:
    """The PUE a DC of this hub must stay at or below: the hub's target, else the national one."""
    return PUE_TARGET_BY_HUB.get(hub, PUE_TARGET_NATIONAL)


assert tuple(HUBS) == HUB_IDS, "HUBS and HubId list the same hubs in the same order"
