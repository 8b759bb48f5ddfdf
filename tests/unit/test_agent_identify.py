"""Device identification is exact or refuses; slices are derived models with a scaled peak."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.collectors import CollectorError
from agents.collectors.identify import (
    ASCEND_NAMES,
    MIG_PROFILES,
    NVIDIA_NAMES,
    NVIDIA_PCI,
    VGPU_BOARDS,
    identify_ascend,
    identify_nvidia,
)
from agents.collectors.nvidia import NvidiaCollector, parse_nvidia_smi
from agents.records import serialise
from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.events import CapacityEvent

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
H100 = load_catalogue().devices["nvidia-h100-sxm5-80gb"]
A100 = load_catalogue().devices["nvidia-a100-sxm4-80gb"]


def test_every_table_names_catalogue_ids() -> None:
    catalogue = load_catalogue()
    named = [*NVIDIA_NAMES.values(), *NVIDIA_PCI.values(), *MIG_PROFILES, *VGPU_BOARDS.values(),
             *ASCEND_NAMES.values()]
    assert [m for m in named if m not in catalogue] == []


@pytest.mark.parametrize(("name", "model"), [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-sxm5-80gb"), ("NVIDIA-H100-80GB-HBM3", "nvidia-h100-sxm5-80gb"),
    ("NVIDIA H100 PCIe", "nvidia-h100-pcie-80gb"), ("NVIDIA H800 80GB HBM3", "nvidia-h800-sxm5-80gb"),
    ("NVIDIA H20", "nvidia-h20-96gb"), ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
    ("A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"), ("NVIDIA A800-SXM4-80GB", "nvidia-a800-sxm4-80gb"),
    ("NVIDIA L40S", "nvidia-l40s-48gb"), ("NVIDIA GeForce RTX 4090", "nvidia-rtx-4090"),
    ("Tesla V100-SXM2-32GB", "nvidia-v100-sxm2-32gb"),
])
def test_whole_gpus_by_their_exact_names(name: str, model: str) -> None:
    found = identify_nvidia(name)
    assert found.device_model == model and found.peak is None


@pytest.mark.parametrize("name", [
    "NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA B200",
    "Tesla V100-SXM2-16GB", "NVIDIA H100", "NVIDIA H20-3e", "NVIDIA L40", "NVIDIA H100 80GB HBM3 extra",
])
def test_near_names_are_refused_not_guessed(name: str) -> None:
    with pytest.raises(CollectorError, match="set device_model"):
        identify_nvidia(name)


def test_pci_device_id_identifies_and_must_agree_with_the_name() -> None:
    assert identify_nvidia("NVIDIA Graphics Device", pci_device_id=0x2330).device_model == "nvidia-h100-sxm5-80gb"
    with pytest.raises(CollectorError, match="PCI device id 0x20b2"):
        identify_nvidia("NVIDIA H100 80GB HBM3", pci_device_id=0x20B2)
    gpus = parse_nvidia_smi("0, NVIDIA Graphics Device, GPU-1, 5, 10, 81559, 70, 0x233010DE\n")
    assert gpus.devices[0].pci_device_id == 0x2330
    (event,) = NvidiaCollector("dc-1", "gpu", 15).events(gpus, NOW).events
    assert event["data"]["device_model"] == "nvidia-h100-sxm5-80gb"


@pytest.mark.parametrize(("shown", "kwargs", "model", "share"), [
    ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", {}, "nvidia-a100-sxm4-80gb-mig-1g.10gb", 1 / 7),
    ("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", {}, "nvidia-a100-sxm4-80gb-mig-3g.40gb", 3 / 7),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", {}, "nvidia-h100-sxm5-80gb-mig-1g.10gb", 1 / 7),
    ("NVIDIA H100 80GB HBM3", {"mig_profile": "2g.20gb"}, "nvidia-h100-sxm5-80gb-mig-2g.20gb", 2 / 7),
    ("NVIDIA H20", {"mig_profile": "mig-7g.96gb"}, "nvidia-h20-96gb-mig-7g.96gb", 1.0),
    ("NVIDIA H100XM-2-20C", {}, "nvidia-h100-sxm5-80gb-vgpu-2-20c", 2 / 7),
    ("NVIDIA H100XM-40C", {}, "nvidia-h100-sxm5-80gb-vgpu-40c", 0.5),
    ("GRID A100DX-10C", {}, "nvidia-a100-sxm4-80gb-vgpu-10c", 10 / 80),
    ("NVIDIA L40S-24Q", {}, "nvidia-l40s-48gb-vgpu-24q", 0.5),
])
def test_slices_are_derived_models_with_the_peak_scaled(shown: str, kwargs: dict[str, str], model: str,
                                                         share: float) -> None:
    found = identify_nvidia(shown, **kwargs)
    parent = load_catalogue().devices[model.split("-mig-")[0].split("-vgpu-")[0]]
    assert found.device_model == model and found.share == pytest.approx(share)
    assert found.peak is not None and found.peak.fp16 == pytest.approx(parent.fp16 * share, abs=1e-3)
    assert found.peak.fp16 < parent.fp16 or share == 1.0


@pytest.mark.parametrize(("shown", "kwargs", "message"), [
    ("NVIDIA H100L-2-24C", {}, "vGPU profile of H100 NVL"),
    ("NVIDIA A100-4C", {}, "vGPU profile of A100 40GB"),
    ("NVIDIA ZZ9-2-10C", {}, "vGPU profile of board ZZ9"),
    ("NVIDIA A100-SXM4-80GB MIG 1g.5gb", {}, "1g.5gb is not a MIG profile of nvidia-a100"),
    ("NVIDIA L40S MIG 1g.12gb", {}, "nvidia-l40s-48gb has no MIG profiles"),
    ("NVIDIA H100XM-3-10C", {}, "3g.10gb is not a MIG profile"),
    ("NVIDIA L40S-96C", {}, "does not fit"),
    ("NVIDIA H100 80GB HBM3", {"mig_profile": "half"}, "not like 1g.10gb"),
])
def test_slices_of_unknown_parents_or_profiles_are_named_errors(shown: str, kwargs: dict[str, str],
                                                                message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        identify_nvidia(shown, **kwargs)


def test_a_mig_capacity_event_carries_its_own_peak_and_decodes() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA A100-SXM4-80GB MIG 1g.10gb, MIG-1, 50, 100, 9728, [N/A]\n"
                            "1, NVIDIA A100-SXM4-80GB MIG 1g.10gb, MIG-2, 0, 0, 9728, [N/A]\n")
    (event,) = NvidiaCollector("dc-1", "gpu", 15).events(gpus, NOW).events
    decoded = decode(serialise(event), now=NOW, key="dc-1")
    assert isinstance(decoded, CapacityEvent)
    assert decoded.data.device_model == "nvidia-a100-sxm4-80gb-mig-1g.10gb"
    assert decoded.data.devices_total == 2
    assert decoded.data.peak_tflops_per_device is not None
    assert decoded.data.peak_tflops_per_device.fp16 == pytest.approx(A100.fp16 / 7, abs=1e-3)


@pytest.mark.parametrize(("name", "dies", "model"), [
    ("Ascend910", 2, "huawei-ascend-910c"), ("910C", 1, "huawei-ascend-910c"),
    ("910B3", 1, "huawei-ascend-910b3"), ("310P3", 2, "huawei-ascend-310p"),
])
def test_ascend_names(name: str, dies: int, model: str) -> None:
    assert identify_ascend(name, dies_per_npu=dies).device_model == model


def test_ascend910_on_one_die_is_ambiguous_and_refused() -> None:
    with pytest.raises(CollectorError, match="not an Atlas A3"):
        identify_ascend("Ascend910", dies_per_npu=1)
