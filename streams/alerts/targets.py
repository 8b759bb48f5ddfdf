"""Default alert thresholds: the hub PUE targets and the green-share target. Pure data.

The figures live in schemas/hubs.py (from the vendored reference, schemas/reference/); this
module only names the limits the alert rules apply. A DC under hub `none` gets the national
average PUE target (< 1.5).
"""

from __future__ import annotations

from schemas.hubs import GREEN_SHARE_TARGET, PUE_TARGET_BY_HUB, PUE_TARGET_NATIONAL, pue_limit

__all__ = ["GREEN_SHARE_TARGET", "PUE_TARGET_BY_HUB", "PUE_TARGET_NATIONAL", "pue_target"]


def pue_target(hub: str) -> float:
    """The PUE a hub's DCs must stay at or below (hub `none`: the national average target)."""
    return pue_limit(hub)
