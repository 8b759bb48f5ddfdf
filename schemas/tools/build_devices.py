"""Generator of schemas/devices.toml from the reference catalogue (SPEC §3.1). Pure but for `main`.

Run from anywhere: `python schemas/tools/build_devices.py` rewrites schemas/devices.toml from
schemas/reference/catalogue.json (the vendored reference, see its README); `--check` only compares.
The output is deterministic (reference order, fixed formatting, no timestamps), so re-running it
on the same reference reproduces the committed file byte for byte. TOML is written by hand: no
dependency beyond the standard library.

Conventions (SPEC §3.1): fp16 = dense FP16/BF16 tensor peak without sparsity, fp32 = IEEE FP32
(never TF32), fp64; all in TFLOPS per unit. A figure the reference does not give is left out of
the entry, which the loader reads as None (unknown). For CPUs `unit = "core"`: peaks and TDP are
the socket figures divided by the core count, and fp16 is left out (see the entry notes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = REPO_ROOT / "schemas" / "reference" / "catalogue.json"
DEFAULT_OUTPUT = REPO_ROOT / "schemas" / "devices.toml"

VERSION = "2026.1"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
VENDOR_STATUSES = frozenset({"vendor", "vendor-unverified"})

# reference id (catalogue.json) -> device_model id (`<vendor>-<model>`, lowercase). Every
# reference accelerator and CPU must be listed here, and nothing else: the generator refuses
# to run otherwise, so a new reference entry forces a deliberate choice of id.
ACCELERATOR_IDS: dict[str, str] = {
    "nv_a100_sxm80": "nvidia-a100-sxm4-80gb",
    "nv_a800_sxm80": "nvidia-a800-sxm4-80gb",
    "nv_h100_sxm": "nvidia-h100-sxm5-80gb",
    "nv_h100_pcie": "nvidia-h100-pcie-80gb",
    "nv_h800_sxm": "nvidia-h800-sxm5-80gb",
    "nv_h20": "nvidia-h20-96gb",
    "nv_l20": "nvidia-l20-48gb",
    "nv_l40s": "nvidia-l40s-48gb",
    "nv_rtx4090": "nvidia-rtx-4090",
    "nv_v100_sxm2": "nvidia-v100-sxm2-32gb",
    "hw_ascend910": "huawei-ascend-910",
    "hw_ascend910b1": "huawei-ascend-910b1",
    "hw_ascend910b2": "huawei-ascend-910b2",
    "hw_ascend910b3": "huawei-ascend-910b3",
    "hw_ascend910b4": "huawei-ascend-910b4",
    "hw_ascend910c": "huawei-ascend-910c",
    "hw_ascend310p": "huawei-ascend-310p",
    "hw_atlas300i_duo": "huawei-atlas-300i-duo",
    "hygon_dcu_z100": "hygon-dcu-z100",
    "hygon_dcu_k100": "hygon-dcu-k100",
    "cambricon_mlu370_x8": "cambricon-mlu370-x8",
    "cambricon_mlu590": "cambricon-mlu590",
    "kunlunxin_r200": "kunlunxin-r200",
    "kunlunxin_p800": "kunlunxin-p800",
    "biren_br100": "biren-br100",
    "mthreads_s4000": "mthreads-mtt-s4000",
}
CPU_IDS: dict[str, str] = {
    "kunpeng920_6426": "huawei-kunpeng-920-6426",
    "hygon_7285": "hygon-c86-7285",
    "hygon_7390": "hygon-c86-7390",
    "phytium_s2500": "phytium-s2500",
    "xeon_8480p": "intel-xeon-platinum-8480p",
    "epyc_9654": "amd-epyc-9654",
}

CPU_FP16_NOTE = (
    "fp16 left out (unknown): the reference gives no dense FP16/BF16 peak for CPUs, and "
    "national-style totals count CPUs at FP32 (domain-data.md section 2.2)"
)


class ReferenceError(ValueError):
    """The reference catalogue does not match what the generator expects."""


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_float(value: float) -> str:
    """A TOML float, shortest round-trip form; rounded to 9 places to drop division noise."""
    text = repr(round(float(value), 9))
    if not re.fullmatch(r"-?[0-9]+\.[0-9]+(e-?[0-9]+)?", text):
        raise ReferenceError(f"cannot write {value!r} as a TOML float")
    return text


def _per_unit(value: object, divisor: int = 1) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReferenceError(f"expected a number, got {value!r}")
    return float(value) / divisor


def _figures(status: str) -> str:
    return "vendor" if status in VENDOR_STATUSES else "estimated"


def _unknown_note(fields: Mapping[str, float | None], names: Sequence[str]) -> str | None:
    missing = [name for name in names if fields[name] is None]
    if not missing:
        return None
    return f"{', '.join(missing)} not given by the reference (left out = unknown)"


def accelerator_entry(ref: Mapping[str, Any]) -> dict[str, object]:
    dense: Mapping[str, Any] = ref["tflops_dense"]
    fp16 = dense.get("fp16") if dense.get("fp16") is not None else dense.get("bf16")
    figures: dict[str, float | None] = {
        "fp16": _per_unit(fp16),
        "fp32": _per_unit(dense.get("fp32")),
        "fp64": _per_unit(dense.get("fp64")),
        "memory_gb": _per_unit(ref.get("mem_gb")),
        "tdp_w": _per_unit(ref.get("tdp_w")),
    }
    notes = [f"reference status: {ref['status']}"]
    if ref.get("notes"):
        notes.append(str(ref["notes"]))
    unknown = _unknown_note(figures, tuple(figures))
    if unknown:
        notes.append(unknown)
    return {
        "id": ACCELERATOR_IDS[ref["id"]],
        "vendor": ref["vendor"],
        "model": ref["model"],
        "kind": "accelerator",
        "unit": "device",
        **figures,
        "figures": _figures(ref["status"]),
        "source": ref["source"],
        "reference_id": ref["id"],
        "notes": "; ".join(notes),
    }


def cpu_entry(ref: Mapping[str, Any]) -> dict[str, object]:
    cores = ref["cores"]
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise ReferenceError(f"{ref['id']}: cores must be a positive integer, got {cores!r}")
    notes = [
        f"reference status: {ref['status']}",
        f"{ref['isa']}; {cores} cores / {ref['threads']} threads, base {ref['base_ghz']} GHz, "
        f"{ref['dp_flops_per_cycle_per_core']} DP FLOP/cycle/core",
        f"per core: socket peak FP64 {ref['peak_fp64_tflops']} / FP32 {ref['peak_fp32_tflops']} "
        f"TFLOPS and socket TDP {ref['tdp_w']} W divided by {cores} cores",
        CPU_FP16_NOTE,
        "memory_gb left out: memory is not a per-core property",
    ]
    if ref.get("notes"):
        notes.append(str(ref["notes"]))
    return {
        "id": CPU_IDS[ref["id"]],
        "vendor": ref["vendor"],
        "model": ref["model"],
        "kind": "cpu",
        "unit": "core",
        "fp16": None,
        "fp32": _per_unit(ref["peak_fp32_tflops"], cores),
        "fp64": _per_unit(ref["peak_fp64_tflops"], cores),
        "memory_gb": None,
        "tdp_w": _per_unit(ref["tdp_w"], cores),
        "figures": _figures(ref["status"]),
        "source": ref["source"],
        "reference_id": ref["id"],
        "notes": "; ".join(notes),
    }


def _check_ids(kind: str, refs: Sequence[Mapping[str, Any]], mapping: Mapping[str, str]) -> None:
    seen = [str(ref["id"]) for ref in refs]
    unmapped = sorted(set(seen) - set(mapping))
    stale = sorted(set(mapping) - set(seen))
    if unmapped or stale:
        raise ReferenceError(
            f"{kind}: reference ids without a device id {unmapped}, mapped ids not in the "
            f"reference {stale}; update the id table in schemas/tools/build_devices.py"
        )
    for device_id in mapping.values():
        if not ID_PATTERN.fullmatch(device_id):
            raise ReferenceError(f"device id {device_id!r} breaks {ID_PATTERN.pattern}")


def render_entry(entry: Mapping[str, object]) -> str:
    lines = ["[[device]]"]
    for key, value in entry.items():
        if value is None:
            continue  # TOML has no null; the loader reads a missing key as None
        if isinstance(value, str):
            lines.append(f"{key} = {toml_string(value)}")
        elif isinstance(value, float):
            lines.append(f"{key} = {toml_float(value)}")
        else:
            raise ReferenceError(f"cannot write {key} = {value!r}")
    return "\n".join(lines) + "\n"


def render(reference: Mapping[str, Any]) -> str:
    """The whole devices.toml text for a parsed reference catalogue. Pure and deterministic."""
    accelerators: Sequence[Mapping[str, Any]] = reference["accelerators"]
    cpus: Sequence[Mapping[str, Any]] = reference["cpus"]
    _check_ids("accelerators", accelerators, ACCELERATOR_IDS)
    _check_ids("cpus", cpus, CPU_IDS)
    entries = [accelerator_entry(ref) for ref in accelerators] + [cpu_entry(ref) for ref in cpus]
    header = (
        "# Device catalogue (SPEC §3.1): device_model -> peak dense TFLOPS per unit.\n"
        "# GENERATED by schemas/tools/build_devices.py from schemas/reference/catalogue.json;\n"
        "# do not edit by hand: change the reference or the generator and re-run it.\n"
        "# fp16 = FP16/BF16 tensor, no sparsity; fp32 = IEEE FP32 (not TF32); fp64.\n"
        '# A left-out figure is unknown (None). unit = "core": figures are per CPU core.\n'
        '# figures = "vendor" for vendor-published (incl. unverified) reference figures,\n'
        '# "estimated" for secondary, derived, mixed or estimated ones.\n'
        "\n"
        f"version = {toml_string(VERSION)}\n"
    )
    return header + "".join("\n" + render_entry(entry) for entry in entries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write schemas/devices.toml from the reference.")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    args = parser.parse_args(argv)
    try:
        reference = json.loads(args.reference.read_text(encoding="utf-8"))
        text = render(reference)
    except (OSError, ValueError, KeyError) as exc:
        print(f"build_devices: {args.reference}: {exc!r}", file=sys.stderr)
        return 2
    data = text.encode("utf-8")
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"build_devices: {args.output} is stale; re-run the generator", file=sys.stderr)
            return 1
        return 0
    args.output.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
