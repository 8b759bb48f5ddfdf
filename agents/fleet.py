"""A seeded national fleet of simulated DCs across the 8 hubs, with mixed hardware. Pure.

`national_fleet(n, seed)` spreads `n` DCs over the hubs (eastern demand hubs run NVIDIA, Ascend
and x86/Arm CPUs for training, inference and cloud; western supply hubs run Ascend, Hygon,
Cambricon and Kunpeng for batch and training, with more green power and lower PUE), near the
hub's cluster anchors (domain-data.md §1). Same `n` and seed, same fleet.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.settings import DataCenter
from agents.simpool import rng
from agents.simsettings import PoolSpec, SimulatorSettings


@dataclass(frozen=True)
class SimDC:
    """One simulated DC: who it is and how it is simulated."""

    dc: DataCenter
    sim: SimulatorSettings


# hub -> sites (name, cluster or None, ISO 3166-2:CN, lat, lon), east?; clusters at the anchors of
# domain-data.md §1.3, other sites at city centres (approximate)
HUBS: dict[str, tuple[tuple[tuple[str, str | None, str, float, float], ...], bool]] = {
    "jjj": ((("zhangjiakou", "zhangjiakou", "CN-HE", 40.77, 114.88),
             ("beijing", None, "CN-BJ", 39.90, 116.40), ("tianjin", None, "CN-TJ", 39.13, 117.20)),
            True),
    "yrd": ((("qingpu", "yrd_demo", "CN-SH", 31.05, 120.90), ("wuhu", "wuhu", "CN-AH", 31.33, 118.38),
             ("nanjing", None, "CN-JS", 32.06, 118.80), ("hangzhou", None, "CN-ZJ", 30.27, 120.15)),
            True),
    "gba": ((("shaoguan", "shaoguan", "CN-GD", 24.80, 113.60),
             ("shenzhen", None, "CN-GD", 22.54, 114.06)), True),
    "cy": ((("tianfu", "tianfu", "CN-SC", 30.60, 104.12),
            ("chongqing", "chongqing", "CN-CQ", 29.62, 106.45)), True),
    "nm": ((("horinger", "horinger", "CN-NM", 40.45, 111.80),), False),
    "gz": ((("guian", "guian", "CN-GZ", 26.42, 106.30),), False),
    "gs": ((("qingyang", "qingyang", "CN-GS", 35.71, 107.64),), False),
    "nx": ((("zhongwei", "zhongwei", "CN-NX", 37.51, 105.19),), False),
}
OPERATORS = ("China Telecom", "China Mobile", "China Unicom", "GDS", "Alibaba Cloud",
             "Tencent Cloud", "Huawei Cloud", "Sugon", "Inspur", "Range Technology")
EAST_HW = (("nvidia-h100-sxm5-80gb", "training"), ("nvidia-h800-sxm5-80gb", "training"),
           ("nvidia-a800-sxm4-80gb", "training"), ("nvidia-h20-96gb", "inference"),
           ("nvidia-l40s-48gb", "inference"), ("huawei-ascend-910b2", "training"),
           ("huawei-ascend-910b3", "inference"))
WEST_HW = (("huawei-ascend-910b2", "training"), ("huawei-ascend-910b4", "batch"),
           ("hygon-dcu-k100", "batch"), ("cambricon-mlu370-x8", "inference"),
           ("cambricon-mlu590", "training"), ("huawei-ascend-910c", "training"))
EAST_CPU = ("intel-xeon-platinum-8480p", "amd-epyc-9654", "huawei-kunpeng-920-6426")
WEST_CPU = ("huawei-kunpeng-920-6426", "hygon-c86-7285", "hygon-c86-7390", "phytium-s2500")


def national_fleet(n: int, seed: int = 0, *, metered_share: float = 0.3,
                   scale: float = 1.0) -> list[SimDC]:
    """`n` simulated DCs, round-robin over the 8 hubs; `scale` multiplies every pool's size."""
    r = rng(seed, "fleet")
    hubs = list(HUBS)
    fleet = []
    for i in range(n):
        hub = hubs[i % len(hubs)]
        sites, east = HUBS[hub]
        site, cluster, province, lat, lon = sites[(i // len(hubs)) % len(sites)]
        dc_id = f"{hub}-{site}-{i // len(hubs) + 1:02d}"
        pools = []
        accel = r.sample(EAST_HW if east else WEST_HW, r.choice((1, 2, 2, 3)))
        for model, profile in accel:
            devices = max(8, int(r.choice((64, 128, 256, 512, 1024)) * scale) // 8 * 8)
            pools.append(PoolSpec(pool_id=model.split("-", 1)[1][:24].rstrip("-"),
                                  device_model=model, devices=devices, profile=profile,
                                  metered_share=metered_share))
        cpu = r.choice(EAST_CPU if east else WEST_CPU)
        pools.append(PoolSpec(pool_id="cpu", device_model=cpu, profile="cloud" if east else "batch",
                              devices=max(64, int(r.choice((2048, 4096, 8192)) * scale)),
                              metered_share=metered_share))
        sim = SimulatorSettings(
            enabled=True, seed=seed * 1000 + i, pools=pools,
            pue=round(r.uniform(1.18, 1.35) if east else r.uniform(1.12, 1.25), 3),
            green_contract_share=round(r.uniform(0.05, 0.25) if east else r.uniform(0.2, 0.5), 3),
            onsite_renewable_share=round(r.uniform(0.0, 0.05), 3))
        dc = DataCenter(dc_id=dc_id, name=f"{site.title()} DC {i // len(hubs) + 1}",
                        operator=r.choice(OPERATORS), province=province, hub=hub,
                        cluster=cluster, lat=round(lat + r.uniform(-0.2, 0.2), 4),
                        lon=round(lon + r.uniform(-0.2, 0.2), 4),
                        racks_total=r.choice((500, 1000, 2000, 5000)))
        fleet.append(SimDC(dc, sim))
    return fleet
