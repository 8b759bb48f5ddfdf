"""The demo's allocated-against-metered comparison (surplus/demo_metering.py), its pure parts."""

from __future__ import annotations

import pytest

from agents.fleet import national_fleet
from schemas.catalogue import load_catalogue
from surplus.demo_metering import explain, simulated_share


def test_the_simulated_share_is_the_fleets_device_weighted_metered_share() -> None:
    accelerators = {m for m, d in load_catalogue().devices.items() if d.kind == "accelerator"}
    pools = [(p.device_model, p.devices, p.metered_share) for d in national_fleet(8, seed=7) for p in d.sim.pools]
    assert simulated_share(pools, accelerators) == pytest.approx(0.3)
    assert simulated_share([("gpu", 10, 0.5), ("gpu", 30, 0.1), ("cpu", 99, 1.0)], {"gpu"}) == pytest.approx(0.2)
    assert simulated_share([("cpu", 8, 0.3)], {"gpu"}) is None


def test_the_explanation_gives_both_figures_and_why() -> None:
    text = explain({"since": "2026-12-03T16:00:00Z", "allocated_device_hours": 35134.7,
                    "metered_device_hours": 2921.47, "metered_share": 2921.47 / 35134.7,
                    "simulated_metered_share": 0.3})
    first, second = text.splitlines()
    assert "2,921.5 metered (ledger) of 35,134.7 allocated (capacity samples), 8.3%." in first
    assert "about 30% of each pool's allocation" in second and "no job running" in second
    assert "allocated (capacity samples)." in explain({"since": "x", "allocated_device_hours": 0.0,
                                                       "metered_device_hours": 0.0, "metered_share": None,
                                                       "simulated_metered_share": None})
