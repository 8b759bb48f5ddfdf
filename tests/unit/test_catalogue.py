"""The device catalogue (SPEC §3.1) against the reference catalogue, and its generator."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from schemas.catalogue import DEVICES_FILE, load_catalogue, parse_catalogue

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "schemas" / "tools" / "build_devices.py"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
REQUIRED_IDS = ("nvidia-h100-sxm5-80gb", "huawei-ascend-910b2", "huawei-kunpeng-920-6426")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_devices", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_devices", module)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
REFERENCE_FILE: Path = gen.DEFAULT_REFERENCE


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    assert REFERENCE_FILE.is_relative_to(REPO_ROOT), "the reference is vendored in the repository"
    data: dict[str, Any] = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    return data


def _ref(reference: dict[str, Any], section: str, ref_id: str) -> dict[str, Any]:
    matches = [entry for entry in reference[section] if entry["id"] == ref_id]
    assert len(matches) == 1, f"{ref_id} appears {len(matches)} times in {section}"
    return matches[0]


def _expected_figures(status: str) -> str:
    return "vendor" if status in ("vendor", "vendor-unverified") else "estimated"


def _by_reference_id(ref_id: str) -> Any:
    matches = [d for d in load_catalogue().devices.values() if d.reference_id == ref_id]
    assert len(matches) == 1, f"reference id {ref_id} maps to {len(matches)} catalogue entries"
    return matches[0]


def test_reference_sizes_and_every_id_is_mapped(reference: dict[str, Any]) -> None:
    assert len(reference["accelerators"]) == 26
    assert len(reference["cpus"]) == 6
    assert {e["id"] for e in reference["accelerators"]} == set(gen.ACCELERATOR_IDS)
    assert {e["id"] for e in reference["cpus"]} == set(gen.CPU_IDS)
    assert len(load_catalogue()) == 32


@pytest.mark.parametrize("ref_id", sorted(gen.ACCELERATOR_IDS))
def test_accelerator_matches_reference(reference: dict[str, Any], ref_id: str) -> None:
    ref = _ref(reference, "accelerators", ref_id)
    device = _by_reference_id(ref_id)
    dense = ref["tflops_dense"]
    assert device.id == gen.ACCELERATOR_IDS[ref_id]
    assert (device.kind, device.unit) == ("accelerator", "device")
    assert (device.vendor, device.model) == (ref["vendor"], ref["model"])
    expected_fp16 = dense["fp16"] if dense["fp16"] is not None else dense["bf16"]
    assert device.fp16 == expected_fp16
    assert device.fp32 == dense["fp32"]  # IEEE FP32, not TF32
    assert device.fp64 == dense["fp64"]
    assert device.memory_gb == ref["mem_gb"]
    assert device.tdp_w == ref["tdp_w"]
    assert device.source == ref["source"]
    assert device.figures == _expected_figures(ref["status"])
    assert ref["status"] in device.notes


@pytest.mark.parametrize("ref_id", sorted(gen.CPU_IDS))
def test_cpu_matches_reference_per_core(reference: dict[str, Any], ref_id: str) -> None:
    ref = _ref(reference, "cpus", ref_id)
    device = _by_reference_id(ref_id)
    cores = ref["cores"]
    assert device.id == gen.CPU_IDS[ref_id]
    assert (device.kind, device.unit) == ("cpu", "core")
    assert (device.vendor, device.model) == (ref["vendor"], ref["model"])
    assert device.fp64 == pytest.approx(ref["peak_fp64_tflops"] / cores, rel=1e-7)
    assert device.fp32 == pytest.approx(ref["peak_fp32_tflops"] / cores, rel=1e-7)
    assert device.tdp_w == pytest.approx(ref["tdp_w"] / cores, rel=1e-9)
    assert device.fp16 is None
    assert "fp16 left out" in device.notes
    assert device.memory_gb is None
    assert device.source == ref["source"]
    assert device.figures == _expected_figures(ref["status"])


def test_ids_match_the_pattern_and_reference_ids_are_unique() -> None:
    devices = load_catalogue().devices
    for device_id, device in devices.items():
        assert ID_PATTERN.fullmatch(device_id), device_id
        assert device.id == device_id
        assert device.source.strip(), device_id
        assert device.figures in ("vendor", "estimated")
    reference_ids = [d.reference_id for d in devices.values()]
    assert len(reference_ids) == len(set(reference_ids))


@pytest.mark.parametrize("device_id", REQUIRED_IDS)
def test_required_ids_exist(device_id: str) -> None:
    assert device_id in load_catalogue()


def test_catalogue_has_a_version() -> None:
    assert load_catalogue().version == gen.VERSION


def test_generator_reproduces_the_committed_file(reference: dict[str, Any]) -> None:
    assert gen.render(reference).encode("utf-8") == DEVICES_FILE.read_bytes()


def test_generator_main_writes_and_checks(reference: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "devices.toml"
    assert gen.main(["--reference", str(REFERENCE_FILE), "--output", str(out)]) == 0
    assert out.read_bytes() == DEVICES_FILE.read_bytes()
    check = ["--reference", str(REFERENCE_FILE), "--output", str(out), "--check"]
    assert gen.main(check) == 0
    out.write_bytes(out.read_bytes() + b"\n")
    assert gen.main(check) == 1


def test_generator_refuses_an_unmapped_reference_entry(reference: dict[str, Any]) -> None:
    extra = dict(reference["accelerators"][0], id="nv_b200")
    changed = dict(reference, accelerators=[*reference["accelerators"], extra])
    with pytest.raises(gen.ReferenceError, match="nv_b200"):
        gen.render(changed)


def test_missing_optional_figures_load_as_none() -> None:
    catalogue = parse_catalogue(
        'version = "t"\n[[device]]\nid = "x-npu"\nvendor = "X"\nmodel = "NPU"\n'
        'kind = "accelerator"\nunit = "device"\nfp16 = 100.0\nfigures = "estimated"\n'
        'source = "test"\nreference_id = "x"\n'
    )
    device = catalogue.devices["x-npu"]
    assert (device.fp32, device.fp64, device.memory_gb, device.tdp_w) == (None,) * 4
    assert device.peak("fp16") == 100.0
    assert device.peak("fp64") == 0.0


@pytest.mark.parametrize("text", ['a "quoted" \\ back\nline\ttab', "深算一号", "ctl\x01\x7f"])
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {gen.toml_string(text)}")["v"] == text
