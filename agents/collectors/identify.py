"""Device identification: tool names and PCI ids -> catalogue ids, MIG and vGPU slices. Pure.

Exact or refuses: a name maps to a catalogue id (schemas/devices.toml) only through the tables
below, as the tools print them (nvidia-smi `name`, DCGM's `modelName`, Kubernetes'
`nvidia.com/gpu.product`; npu-smi's `Name`). Names are compared after case folding and with
runs of spaces, `-` and `_` taken as one separator (so `NVIDIA H100 80GB HBM3` and
`NVIDIA-H100-80GB-HBM3` are one name); nothing else is loose. A name not in a table is a
`CollectorError` naming it, unless the operator configured `device_model`.

Slices are their own device models, derived from the parent, with the peak scaled by the
slice's share of the parent's compute (and sent as `peak_tflops_per_device`, which wins over
the catalogue, SPEC §3):

- MIG instances (`<parent> MIG 1g.10gb`, `nvidia.com/mig-1g.10gb`): `<g>g` of the parent's 7
  compute slices, share g/7 (NVIDIA MIG User Guide, "Supported MIG Profiles": on A100/H100
  class GPUs a 1g profile is 1/7 of the streaming multiprocessors, 7g the whole GPU). The
  profile must be one the parent supports, or it is refused.
- vGPU profiles (NVIDIA Virtual GPU Software User Guide, "Virtual GPU Types": `<board>-<fb><series>`
  time-sliced, `<board>-<g>-<fb><series>` MIG-backed, series A/B/C/Q): MIG-backed share g/7;
  time-sliced share fb / the board's frame buffer, the share one vGPU gets under the fixed- and
  equal-share schedulers (at most board fb / profile fb such vGPUs share one GPU).
  Board names map to parents by an exact table (`H100XM` = H100 SXM5 80GB ...); a board without
  a catalogue parent (`H100L`, the H100 NVL) is refused, never given some other GPU's peak.

PCI device ids (vendor 10de) come from the public PCI ID database (pci-ids.ucw.cz).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from agents.collectors import CollectorError
from schemas.catalogue import Device, load_catalogue
from schemas.events import PeakTflops

MIG_SLICES: Final = 7  # compute slices of an A100/H100/H20-class GPU

# normalised nvidia name (see `norm`) -> catalogue id
NVIDIA_NAMES: Final = {
    "H100-80GB-HBM3": "nvidia-h100-sxm5-80gb",
    "H100-PCIE": "nvidia-h100-pcie-80gb",
    "H800-80GB-HBM3": "nvidia-h800-sxm5-80gb",
    "H20": "nvidia-h20-96gb",
    "A100-SXM4-80GB": "nvidia-a100-sxm4-80gb",
    "A800-SXM4-80GB": "nvidia-a800-sxm4-80gb",
    "L40S": "nvidia-l40s-48gb",
    "L20": "nvidia-l20-48gb",
    "GEFORCE-RTX-4090": "nvidia-rtx-4090",
    "TESLA-V100-SXM2-32GB": "nvidia-v100-sxm2-32gb",
}
# PCI device id (vendor 10de) -> catalogue id
NVIDIA_PCI: Final = {
    0x2330: "nvidia-h100-sxm5-80gb",  # GH100 [H100 SXM5 80GB]
    0x2331: "nvidia-h100-pcie-80gb",  # GH100 [H100 PCIe]
    0x2324: "nvidia-h800-sxm5-80gb",  # GH100 [H800]
    0x2329: "nvidia-h20-96gb",  # GH100 [H20]
    0x20B2: "nvidia-a100-sxm4-80gb",  # GA100 [A100 SXM4 80GB]
    0x20F3: "nvidia-a800-sxm4-80gb",  # GA100 [A800-SXM4-80GB]
    0x26B9: "nvidia-l40s-48gb",  # AD102GL [L40S]
    0x26BA: "nvidia-l20-48gb",  # AD102GL [L20]
    0x2684: "nvidia-rtx-4090",  # AD102 [GeForce RTX 4090]
    0x1DB5: "nvidia-v100-sxm2-32gb",  # GV100GL [Tesla V100 SXM2 32GB]
}
# MIG profiles (compute slices, memory GB) each parent supports (MIG User Guide)
_MIG_80GB: Final = frozenset({(1, 10), (1, 20), (2, 20), (3, 40), (4, 40), (7, 80)})
MIG_PROFILES: Final = {
    "nvidia-a100-sxm4-80gb": _MIG_80GB, "nvidia-a800-sxm4-80gb": _MIG_80GB,
    "nvidia-h100-sxm5-80gb": _MIG_80GB, "nvidia-h100-pcie-80gb": _MIG_80GB,
    "nvidia-h800-sxm5-80gb": _MIG_80GB,
    "nvidia-h20-96gb": frozenset({(1, 12), (1, 24), (2, 24), (3, 48), (4, 48), (7, 96)}),
}
# vGPU board names -> parent catalogue id (only the boards whose parent is in the catalogue)
VGPU_BOARDS: Final = {
    "A100DX": "nvidia-a100-sxm4-80gb", "H100XM": "nvidia-h100-sxm5-80gb",
    "H100": "nvidia-h100-pcie-80gb", "H800XM": "nvidia-h800-sxm5-80gb", "H20": "nvidia-h20-96gb",
    "L40S": "nvidia-l40s-48gb", "L20": "nvidia-l20-48gb",
}
# vGPU boards known to exist whose parent is not in the catalogue (named in the refusal)
VGPU_UNKNOWN_BOARDS: Final = {"A100": "A100 40GB", "A100D": "A100 80GB PCIe", "A100X": "A100X",
                              "H100L": "H100 NVL 94GB", "H800": "H800 PCIe", "A800": "A800 40GB",
                              "A800D": "A800 80GB PCIe", "L40": "L40", "L4": "L4", "A10": "A10",
                              "A30": "A30", "A40": "A40", "T4": "T4", "V100": "V100"}

_MIG = re.compile(r"^(?P<parent>.+?)-MIG-(?P<g>\d)G\.(?P<gb>\d+)GB(?:\+ME)?$")
_MIG_PROFILE = re.compile(r"^(?:MIG-)?(?P<g>\d)G\.(?P<gb>\d+)GB(?:\+ME)?$")
_VGPU = re.compile(r"^(?:GRID-)?(?P<board>[A-Z0-9]+?)-(?:(?P<g>\d)-)?(?P<fb>\d+)(?P<series>[ABCQ])$")

# npu-smi `Name` -> catalogue id (names of single-die devices; each chip row is one device)
ASCEND_NAMES: Final = {
    "910B1": "huawei-ascend-910b1", "910B2": "huawei-ascend-910b2",
    "910B3": "huawei-ascend-910b3", "910B4": "huawei-ascend-910b4",
    "910A": "huawei-ascend-910", "910PREMIUMA": "huawei-ascend-910",
    "910C": "huawei-ascend-910c", "310P3": "huawei-ascend-310p",
}
# Atlas A3: npu-smi names every die `Ascend910` and repeats the NPU once per die
A3_NAME: Final = "ASCEND910"
# dies per device as the catalogue counts devices (910C: one package of two dies)
DIES_PER_DEVICE: Final = {"huawei-ascend-910c": 2}


@dataclass(frozen=True, slots=True)
class Identified:
    """A device model for the wire: a catalogue id, or a derived one with its own peak."""

    device_model: str
    peak: PeakTflops | None = None  # set for derived models (slices)
    share: float = 1.0  # of the parent's compute

    @property
    def derived(self) -> bool:
        return self.peak is not None


def norm(name: str) -> str:
    """Case-folded, one `-` for each run of spaces, `-` and `_`, without a leading `NVIDIA`."""
    key = re.sub(r"[\s_-]+", "-", name.strip().upper())
    return key.removeprefix("NVIDIA-")


def _parent(device_model: str) -> Device:
    device = load_catalogue().get(device_model)
    if device is None:  # the tables only name catalogue ids (a test proves it)
        raise CollectorError(f"{device_model!r} is not in the device catalogue")
    return device


def derive(parent_id: str, suffix: str, share: float) -> Identified:
    """A slice of `parent_id` with `share` of its compute: id `<parent>-<suffix>`, scaled peaks."""
    parent = _parent(parent_id)
    peak = PeakTflops(**{p: None if getattr(parent, p) is None else round(getattr(parent, p) * share, 4)
                         for p in ("fp16", "fp32", "fp64")})
    return Identified(f"{parent_id}-{suffix}".lower(), peak, share)


def mig(parent_id: str, g: int, gb: int, shown: str) -> Identified:
    profiles = MIG_PROFILES.get(parent_id)
    if profiles is None:
        raise CollectorError(f"{shown!r}: {parent_id} has no MIG profiles")
    if (g, gb) not in profiles:
        raise CollectorError(f"{shown!r}: {g}g.{gb}gb is not a MIG profile of {parent_id}")
    return derive(parent_id, f"mig-{g}g.{gb}gb", g / MIG_SLICES)


def _vgpu(match: re.Match[str], shown: str) -> Identified:
    board, fb = match["board"], int(match["fb"])
    parent_id = VGPU_BOARDS.get(board)
    if parent_id is None:
        what = VGPU_UNKNOWN_BOARDS.get(board, f"board {board}")
        raise CollectorError(f"{shown!r} is a vGPU profile of {what}, which has no catalogue entry: "
                             "set device_model to a catalogue id")
    if match["g"]:
        g = int(match["g"])
        sliced = mig(parent_id, g, fb, shown)
        return derive(parent_id, f"vgpu-{g}-{fb}{match['series']}", sliced.share)
    memory = _parent(parent_id).memory_gb
    if not memory or fb > memory:
        raise CollectorError(f"{shown!r}: {fb} GB frame buffer does not fit {parent_id}")
    return derive(parent_id, f"vgpu-{fb}{match['series']}", fb / memory)


def identify_nvidia(name: str, *, pci_device_id: int | None = None,
                    mig_profile: str | None = None) -> Identified:
    """The device model of an NVIDIA GPU, MIG instance or vGPU, or a CollectorError naming it.

    `name` as nvidia-smi / DCGM / Kubernetes print it; `pci_device_id` (e.g. 0x2330) when known
    (it must agree with the name); `mig_profile` (`1g.10gb`) when the instance is given apart
    from its parent's name (DCGM's GPU_I_PROFILE, Kubernetes' mig resources).
    """
    key = norm(name)
    shown = name.strip()
    match = _MIG.match(key)
    if match:
        parent = identify_nvidia(match["parent"], pci_device_id=pci_device_id)
        return mig(parent.device_model, int(match["g"]), int(match["gb"]), shown)
    by_name = NVIDIA_NAMES.get(key)
    by_pci = NVIDIA_PCI.get(pci_device_id) if pci_device_id is not None else None
    if by_name and by_pci and by_name != by_pci:
        raise CollectorError(f"GPU {shown!r} has PCI device id {pci_device_id:#06x} of {by_pci}")
    model = by_name or by_pci
    if model is None:
        vgpu = _VGPU.match(key)
        if vgpu:
            return _vgpu(vgpu, shown)
        raise CollectorError(f"unknown GPU {shown!r}: not in the table of catalogue models; "
                             "set device_model to its catalogue id")
    if mig_profile:
        profile = _MIG_PROFILE.match(norm(mig_profile))
        if profile is None:
            raise CollectorError(f"{shown!r}: MIG profile {mig_profile!r} is not like 1g.10gb")
        return mig(model, int(profile["g"]), int(profile["gb"]), f"{shown} MIG {mig_profile}")
    return Identified(model)


def identify_ascend(name: str, *, dies_per_npu: int = 1) -> Identified:
    """The device model of an Ascend NPU from npu-smi's `Name`, or a CollectorError naming it.

    `dies_per_npu`: chip rows per NPU id (2 on an Atlas A3, where every die is `Ascend910`).
    """
    key = norm(name)
    if key == A3_NAME:
        if dies_per_npu == DIES_PER_DEVICE["huawei-ascend-910c"]:
            return Identified("huawei-ascend-910c")
        raise CollectorError(f"NPU {name.strip()!r} with {dies_per_npu} die(s) per NPU is not an "
                             "Atlas A3 (2 dies): set device_model to its catalogue id")
    model = ASCEND_NAMES.get(key)
    if model is None:
        raise CollectorError(f"unknown NPU {name.strip()!r}: not in the table of catalogue models; "
                             "set device_model to its catalogue id")
    return Identified(model)


def dies_per_device(device_model: str) -> int:
    return DIES_PER_DEVICE.get(device_model, 1)
