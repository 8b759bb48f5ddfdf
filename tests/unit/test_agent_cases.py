"""The real-world collector cases (tests/fixtures/cases/agent/README.md), each with its right value."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agents.collectors import Collected, CollectorError, Output
from agents.collectors.ascend import AscendCollector, parse_npu_smi
from agents.collectors.nvidia import NvidiaCollector, parse_nvidia_smi
from agents.collectors.sacct import parse_sacct
from agents.collectors.slurm import SlurmCollector
from agents.records import serialise
from agents.settings import SlurmCollector as SlurmSettings
from agents.settings import SlurmPartition
from schemas.decode import decode
from schemas.events import CapacityEvent, JobEvent
from schemas.prices import PriceBook
from streams.ledger import apply

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases" / "agent"
CST = timezone(timedelta(hours=8))
BOOK = PriceBook.parse('[[price]]\ndevice_model = "nvidia-h100-sxm5-80gb"\n'
                       'cny_per_device_hour = "10"\neffective_from = 2026-01-01\n')


def case(name: str) -> str:
    return (CASES / name).read_text()


def at(local: str) -> datetime:
    """A Shanghai wall-clock time (sacct's) as an aware UTC time."""
    return datetime.fromisoformat(local).replace(tzinfo=CST).astimezone(UTC)


def capacity(collector: NvidiaCollector | AscendCollector, text: str) -> list[dict[str, object]]:
    result = collector.events(collector.parse(text), at("2026-11-20T10:00:00"))
    for event in result.events:
        decoded = decode(serialise(event), now=at("2026-11-20T10:00:01"), key="dc-1")
        assert isinstance(decoded, CapacityEvent), decoded
    return [e["data"] for e in result.events]


# -- nvidia-smi --------------------------------------------------------------------------------


def test_n1_insufficient_permissions_is_unknown_not_no_capacity() -> None:
    (data,) = capacity(NvidiaCollector("dc-1", "gpu", 15), case("n1-mig-insufficient-permissions.csv"))
    assert data["device_model"] == "nvidia-a100-sxm4-80gb"
    assert (data["devices_total"], data["devices_online"]) == (1, 1)
    assert data.get("busy_ratio") is None  # utilisation [N/A]: unknown, not 0
    gpu = parse_nvidia_smi(case("n1-mig-insufficient-permissions.csv")).devices[0]
    assert gpu.memory_used_mib is None and gpu.memory_total_mib is None and gpu.power_w == 62.10


@pytest.mark.parametrize("placeholder", ["[Insufficient Permissions]", "[Not Supported]", "[N/A]",
                                         "[Unknown Error]", "ERR!", "[Some Future Placeholder]"])
def test_any_placeholder_in_one_field_leaves_the_gpu_online(placeholder: str) -> None:
    text = f"0, NVIDIA H100 80GB HBM3, GPU-1, 40, {placeholder}, 81559, 300\n"
    (data,) = capacity(NvidiaCollector("dc-1", "gpu", 15), text)
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (1, 1, 1)
    assert data["busy_ratio"] == 0.4


@pytest.mark.parametrize("lost", ["[GPU requires reset]", "[GPU is lost]"])
def test_a_lost_gpu_marker_takes_only_that_gpu_offline(lost: str) -> None:
    text = (f"0, NVIDIA H100 80GB HBM3, GPU-1, {lost}, {lost}, {lost}, {lost}\n"
            "1, NVIDIA H100 80GB HBM3, GPU-2, 50, 70000, 81559, 500\n")
    (data,) = capacity(NvidiaCollector("dc-1", "gpu", 15), text)
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (2, 1, 1)


def test_n2_vgpu_slice_is_a_named_error_never_a_whole_h100() -> None:
    collector = NvidiaCollector("dc-1", "gpu", 15)
    with pytest.raises(CollectorError, match=r"nvidia: .*H100L-2-24C.*vGPU profile of H100 NVL") as info:
        collector.events(collector.parse(case("n2-vgpu-h100l-2-24c.csv")), at("2026-11-20T10:00:00"))
    assert "\n" not in str(info.value)


def test_n5_gpu_fallen_off_the_bus_counts_as_not_online_and_the_rest_is_reported() -> None:
    parsed = parse_nvidia_smi(case("n5-fell-off-bus.csv"))
    assert [g.index for g in parsed.devices] == [0, 2] and parsed.lost == 1
    assert len(parsed.skipped) == 1 and "GPU0000:0B:00.0" in parsed.skipped[0]
    (data,) = capacity(NvidiaCollector("dc-1", "gpu", 15), case("n5-fell-off-bus.csv"))
    assert data["device_model"] == "nvidia-a800-sxm4-80gb"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (3, 2, 1)
    assert data["busy_ratio"] == pytest.approx(0.225)


def test_n6_missing_power_does_not_take_a_working_gpu_offline() -> None:
    (data,) = capacity(NvidiaCollector("dc-1", "gpu", 15), case("n6-power-unknown-error.csv"))
    assert data["device_model"] == "nvidia-h100-sxm5-80gb"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (2, 2, 2)
    assert data["busy_ratio"] == pytest.approx(0.96)


# -- npu-smi -----------------------------------------------------------------------------------


def test_a1_atlas_a3_counts_packages_as_the_catalogue_does() -> None:
    chips = parse_npu_smi(case("a1-atlas-a3-910c.txt")).devices
    assert len(chips) == 4  # two dies per NPU
    (data,) = capacity(AscendCollector("dc-1", "npu", 15), case("a1-atlas-a3-910c.txt"))
    assert data["device_model"] == "huawei-ascend-910c"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (2, 2, 0)


def test_atlas_a3_with_eight_packages_and_one_busy_die() -> None:
    block = case("a1-atlas-a3-910c.txt").split("+===========================+===============+"
                                               "====================================================+\n")
    header, npu0 = block[0], block[1]
    rows = []
    for n in range(8):
        rows.append(npu0.replace("| 0     Ascend910", f"| {n}     Ascend910"))
    text = header + "+====+\n".join(rows) + "+====+\n"
    text = text.replace("| 0     0                   | 0000:9D:00.0  | 0 ", "| 0     0                   | 0000:9D:00.0  | 80", 1)
    (data,) = capacity(AscendCollector("dc-1", "npu", 15), text)
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (8, 8, 1)
    assert data["busy_ratio"] == pytest.approx(80 / 16 / 100, abs=1e-4)


# -- sacct -------------------------------------------------------------------------------------


def slurm(**kw: object) -> SlurmCollector:
    cfg = SlurmSettings(enabled=True, partitions=[
        SlurmPartition(name="gpu-h100", pool_id="h100", device_model="nvidia-h100-sxm5-80gb")], **kw)
    return SlurmCollector("dc-1", cfg, 60)


def poll(collector: SlurmCollector, name: str, now: datetime, *, commit: bool = True) -> Collected:
    result = collector.read(Output(case(name)), now)
    for event in result.events:
        decoded = decode(serialise(event), now=now + timedelta(seconds=1), key="dc-1")
        assert isinstance(decoded, JobEvent), decoded
    if commit:
        result.commit()
    return result


def job_events(results: list[Collected]) -> list[JobEvent]:
    out = []
    for result in results:
        for event in result.events:
            decoded = decode(serialise(event), now=datetime(2027, 1, 1, tzinfo=UTC), key="dc-1")
            assert isinstance(decoded, JobEvent)
            out.append(decoded)
    return out


def test_s1b_absurd_energy_is_dropped_for_that_job_and_every_job_is_metered() -> None:
    collector = slurm()
    first = poll(collector, "s1b-poll1.sacct", at("2026-11-20T10:51:00"), commit=False)
    ends = {e["data"]["job_id"]: e["data"] for e in first.events if e["data"]["phase"] == "end"}
    assert ends["5003"]["device_seconds_total"] == 3600
    assert ends["5003"]["energy_kwh_total"] == pytest.approx(2_000_000 / 3.6e6, abs=1e-6)
    assert ends["5001"]["device_seconds_total"] == 1834
    assert ends["5001"]["energy_kwh_total"] < 1834 * 700 * 1.5 / 3.6e6  # the estimate, not 5e12 kWh
    assert any("5001" in w and "18446744073709551614" in w for w in first.warnings)
    # the spool did not take poll 1 (commit not called): poll 2 sends 5003 again, nothing is lost
    second = poll(collector, "s1b-poll2.sacct", at("2026-11-20T10:52:00"))
    assert [(e["data"]["job_id"], e["data"]["phase"]) for e in second.events] == [
        ("5003", "start"), ("5003", "end")]
    assert second.events[1]["id"] == next(e["id"] for e in first.events
                                          if e["data"]["job_id"] == "5003" and e["data"]["phase"] == "end")
    # once committed, the job is done: a later poll sends nothing for it
    assert poll(collector, "s1b-poll2.sacct", at("2026-11-20T10:53:00")).events == []


@pytest.mark.parametrize("energy", ["-1", "", "18446744073709551615", "9223372036854775807", "abc",
                                    "999999999999"])
def test_impossible_or_missing_energy_never_blocks_metering(energy: str) -> None:
    line = (f"5001|u|p|gpu-h100|COMPLETED|cpu=8,gres/gpu=1,node=1|1834|2026-11-20T10:02:11|"
            f"2026-11-20T10:32:45|{energy}\n5003|u|p|gpu-h100|COMPLETED|gres/gpu=2|1800|"
            "2026-11-20T10:20:00|2026-11-20T10:50:00|2000000\n")
    result = slurm().events(parse_sacct(line, CST).devices, at("2026-11-20T10:51:00"))
    ends = {e["data"]["job_id"]: e["data"] for e in result.events if e["data"]["phase"] == "end"}
    assert ends["5001"]["device_seconds_total"] == 1834 and ends["5003"]["device_seconds_total"] == 3600
    assert 0 < ends["5001"]["energy_kwh_total"] < 1


def test_s2_preempted_and_requeued_job_is_metered_for_both_runs_and_ends_once() -> None:
    collector = slurm()
    results = [poll(collector, "s2-poll1.sacct", at("2026-11-20T09:50:00")),
               poll(collector, "s2-poll2.sacct", at("2026-11-20T09:52:00")),
               poll(collector, "s2-poll3.sacct", at("2026-11-20T10:05:00")),
               poll(collector, "s2-poll4.sacct", at("2026-11-20T10:16:00"))]
    events = job_events(results)
    seqs = [e.data.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # seq only rises across runs
    ends = [e for e in events if e.data.phase == "end"]
    assert len(ends) == 1 and ends[0].data.status == "succeeded"
    assert ends[0].time == at("2026-11-20T10:15:00")
    assert ends[0].data.device_seconds_total == 3060 + 1200
    ledger = apply(events, {}, BOOK)
    assert not ledger.rejects
    assert sum(e.device_seconds for e in ledger.entries) == 4260
    assert float(sum(e.amount_cny for e in ledger.entries)) == pytest.approx(4260 / 3600 * 10, abs=1e-3)


def test_s2_a_restarted_agent_keeps_the_runs_from_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "slurm-state.json"
    first = SlurmCollector("dc-1", slurm().cfg, 60, state_path=state)
    results = [poll(first, "s2-poll1.sacct", at("2026-11-20T09:50:00")),
               poll(first, "s2-poll2.sacct", at("2026-11-20T09:52:00"))]
    again = SlurmCollector("dc-1", slurm().cfg, 60, state_path=state)
    results += [poll(again, "s2-poll3.sacct", at("2026-11-20T10:05:00")),
                poll(again, "s2-poll4.sacct", at("2026-11-20T10:16:00"))]
    ledger = apply(job_events(results), {}, BOOK)
    assert not ledger.rejects and sum(e.device_seconds for e in ledger.entries) == 4260


def test_s4_energy_switch_from_estimate_to_measurement_never_falls() -> None:
    collector = slurm()
    results = [poll(collector, "s4-poll1.sacct", at("2026-11-20T10:50:00")),
               poll(collector, "s4-poll2.sacct", at("2026-11-20T10:52:00"))]
    events = job_events(results)
    totals = [(e.data.device_seconds_total, e.data.energy_kwh_total) for e in events]
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in itertools.pairwise(totals))
    end = events[-1].data
    assert end.phase == "end" and end.device_seconds_total == 3700
    assert end.energy_kwh_total > events[-2].data.energy_kwh_total  # the last 100 s kept energy
    ledger = apply(events, {}, BOOK)
    assert not ledger.rejects  # no counter_regression
    assert sum(e.device_seconds for e in ledger.entries) == 3700
