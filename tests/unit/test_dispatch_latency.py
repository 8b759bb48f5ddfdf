"""The latency model against the published targets (schemas/reference/network_latency.toml)."""

from __future__ import annotations

import itertools
import json
import tomllib

import pytest

from surplus.dispatch.latency import LATENCY_FILE, distance_model, latency_ms, provinces, published_targets

HUBS = tomllib.loads(LATENCY_FILE.read_text(encoding="utf-8"))["hub"]
ANCHORS = {h["id"]: (h["lat"], h["lon"])  # the hubs' main clusters, from the vendored reference
           for h in json.loads((LATENCY_FILE.parent / "catalogue.json").read_text(encoding="utf-8"))["hubs"]}


def test_every_hub_has_a_nearby_city() -> None:
    assert {h["id"] for h in HUBS} == set(ANCHORS) and len(ANCHORS) == 8


def test_all_34_provincial_level_divisions_have_a_capital() -> None:
    codes = provinces()
    assert len(codes) == 34
    assert {"CN-SH", "CN-BJ", "CN-GD", "CN-HK", "CN-MO", "CN-TW", "CN-XZ", "CN-NM"} <= set(codes)
    for p in codes.values():
        assert p.code.startswith("CN-") and len(p.code) == 5
        assert 18 <= p.lat <= 54 and 73 <= p.lon <= 135, p


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(sorted(ANCHORS), 2)))
def test_hub_to_hub_within_the_published_target(a: str, b: str) -> None:
    assert distance_model().rtt_ms(ANCHORS[a], ANCHORS[b]) <= published_targets()["hub_to_hub_ms"]


@pytest.mark.parametrize("hub", HUBS, ids=[h["id"] for h in HUBS])
def test_cluster_to_its_nearby_city_within_five_ms(hub: dict[str, object]) -> None:
    rtt = distance_model().rtt_ms(ANCHORS[str(hub["id"])], tuple(hub["nearby"]))  # type: ignore[arg-type]
    assert rtt <= published_targets()["cluster_to_nearby_city_ms"]


def test_the_model_stays_inside_the_inter_cluster_cap_and_known_distances() -> None:
    model = distance_model()
    assert 1.0 <= model.route_factor <= published_targets()["inter_cluster_max_factor"]
    assert model.fixed_overhead_ms <= published_targets()["intra_region_ms"]
    shanghai, beijing = provinces()["CN-SH"], provinces()["CN-BJ"]
    assert model.great_circle_km((shanghai.lat, shanghai.lon), (beijing.lat, beijing.lon)) == pytest.approx(1068, abs=10)
    assert latency_ms("CN-SH", shanghai.lat, shanghai.lon) == pytest.approx(0.4)
    assert latency_ms("CN-SH", beijing.lat, beijing.lon) == pytest.approx(0.4 + 2 * 1068 * 1.1 / 204.2, abs=0.2)
