"""Real collectors on recorded outputs (good, partial, malformed), and failure isolation in the agent."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agents.collectors import CollectorError, Output, run_command
from agents.collectors.ascend import AscendCollector, device_model_of, parse_npu_smi
from agents.collectors.linux import LinuxCollector, parse_cpu_list, parse_proc_stat
from agents.collectors.nvidia import NvidiaCollector, parse_nvidia_smi
from agents.collectors.slurm import SlurmCollector, parse_sacct
from agents.records import serialise
from agents.settings import SlurmCollector as SlurmSettings
from agents.settings import SlurmPartition
from schemas.decode import decode
from schemas.events import CapacityEvent, JobEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "collectors"
NOW = datetime(2026, 11, 20, 2, 47, tzinfo=UTC)  # 10:47 in Shanghai
CST = timezone(timedelta(hours=8))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def valid(events: list[dict[str, object]], dc_id: str = "dc-1") -> list[object]:
    decoded = [decode(serialise(e), now=NOW + timedelta(seconds=1), key=dc_id) for e in events]
    assert all(isinstance(d, CapacityEvent | JobEvent) for d in decoded), decoded
    return decoded


# -- nvidia ------------------------------------------------------------------------------------


def test_nvidia_good_output_is_one_pool_with_busy_and_allocated_gpus() -> None:
    parsed = parse_nvidia_smi(fixture("nvidia-smi-8xh100.csv"))
    gpus = parsed.devices
    assert [g.index for g in gpus] == list(range(8)) and not parsed.skipped
    assert gpus[7].power_w is None and gpus[7].online
    (event,) = NvidiaCollector("dc-1", "h100", 15).events(parsed, NOW).events
    valid([event])
    data = event["data"]
    assert data["device_model"] == "nvidia-h100-sxm5-80gb"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (8, 8, 5)
    assert data["busy_ratio"] == pytest.approx((97 + 95 + 88 + 2 + 100) / 8 / 100, abs=1e-4)
    assert event["id"] == f"cap-h100-{int(NOW.timestamp() * 1000)}"


def test_nvidia_gpu_needing_reset_is_listed_but_not_online() -> None:
    parsed = parse_nvidia_smi(fixture("nvidia-smi-reset.csv"))
    assert [g.online for g in parsed.devices] == [True, False, True, False]
    (event,) = NvidiaCollector("dc-1", "gpu", 15).events(parsed, NOW).events
    valid([event])
    data = event["data"]
    assert data["device_model"] == "nvidia-a800-sxm4-80gb"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (4, 2, 1)
    assert data["busy_ratio"] == 0.45  # the GPU with [N/A] utilisation is not averaged


@pytest.mark.parametrize(("name", "message", "rows"), [
    ("nvidia-smi-partial.csv", "line 2: 5 fields, expected 7", 1),
    ("nvidia-smi-malformed.csv", "line 1: index 'index' is not a number", 1),  # units are read
])
def test_nvidia_partial_output_is_partial_data_and_a_warning(name: str, message: str, rows: int) -> None:
    parsed = parse_nvidia_smi(fixture(name))
    assert len(parsed.devices) == rows
    assert len(parsed.skipped) == 1 and message in parsed.skipped[0]
    result = NvidiaCollector("dc-1", "gpu", 15).events(parsed, NOW)
    assert result.events[0]["data"]["devices_total"] == rows and message in result.warnings[0]


def test_nvidia_reads_numbers_with_units() -> None:
    gpu = parse_nvidia_smi(fixture("nvidia-smi-malformed.csv")).devices[0]
    assert (gpu.util_pct, gpu.memory_used_mib, gpu.power_w) == (97, 71234, 689.42)


def test_nvidia_no_devices_is_one_clear_line() -> None:
    with pytest.raises(CollectorError, match="found no NVIDIA devices") as info:
        parse_nvidia_smi(fixture("nvidia-smi-no-devices.txt"))
    assert "\n" not in str(info.value)
    with pytest.raises(CollectorError, match="printed no GPU rows: line 1"):
        parse_nvidia_smi("garbage\n")


def test_nvidia_unknown_model_asks_for_device_model() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA B200, GPU-x, 5, 100, 183000, 200\n")
    with pytest.raises(CollectorError, match=r"nvidia: GPU 0: unknown GPU 'NVIDIA B200'.*device_model"):
        NvidiaCollector("dc-1", "gpu", 15).events(gpus, NOW)
    (event,) = NvidiaCollector("dc-1", "gpu", 15, device_model="nvidia-h100-sxm5-80gb").events(gpus, NOW).events
    assert event["data"]["device_model"] == "nvidia-h100-sxm5-80gb"


def test_nvidia_one_unknown_gpu_does_not_hide_the_others() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA B200, GPU-x, 5, 100, 183000, 200\n"
                            "1, NVIDIA H100 80GB HBM3, GPU-y, 50, 100, 81559, 200\n")
    result = NvidiaCollector("dc-1", "gpu", 15).events(gpus, NOW)
    assert [e["data"]["devices_total"] for e in result.events] == [1]
    assert result.warnings == ["GPU 0: unknown GPU 'NVIDIA B200': not in the table of catalogue "
                               "models; set device_model to its catalogue id; skipped"]


# -- ascend ------------------------------------------------------------------------------------


def test_ascend_good_output() -> None:
    parsed = parse_npu_smi(fixture("npu-smi-8x910b2.txt"))
    chips = parsed.devices
    assert len(chips) == 8
    assert [c.in_use for c in chips] == [True, True, False, False, True, False, False, True]
    assert [c.online for c in chips].count(False) == 1  # NPU 6 raises an Alarm
    (event,) = AscendCollector("dc-1", "npu", 15).events(parsed, NOW).events
    valid([event])
    data = event["data"]
    assert data["device_model"] == "huawei-ascend-910b2"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (8, 7, 4)
    assert data["busy_ratio"] == pytest.approx((92 + 95 + 88) / 7 / 100, abs=1e-4)


def test_ascend_310p_duo_counts_chips() -> None:
    parsed = parse_npu_smi(fixture("npu-smi-310p-duo.txt"))
    chips = parsed.devices
    assert [(c.npu, c.chip) for c in chips] == [(8, 0), (8, 1), (9, 0), (9, 1)]
    assert chips[1].hbm_total_mb == 43693 and chips[1].in_use
    (event,) = AscendCollector("dc-1", "npu", 15).events(parsed, NOW).events
    valid([event])
    assert event["data"]["device_model"] == "huawei-ascend-310p"
    assert event["data"]["devices_allocated"] == 1


@pytest.mark.parametrize(("name", "message"), [
    ("npu-smi-partial.txt", "NPU 1 has no chip row"),
    ("npu-smi-malformed.txt", "AICore.*'ERR'"),
])
def test_ascend_partial_output_is_partial_data_and_a_warning(name: str, message: str) -> None:
    parsed = parse_npu_smi(fixture(name))
    assert len(parsed.devices) == 1 and len(parsed.skipped) == 1
    assert re.search(message, parsed.skipped[0])
    (event,) = AscendCollector("dc-1", "npu", 15).events(parsed, NOW).events
    assert event["data"]["devices_total"] == 1 and event["data"]["devices_online"] == 1


def test_ascend_not_a_table() -> None:
    with pytest.raises(CollectorError, match="no NPU rows"):
        parse_npu_smi("Command 'npu-smi' not found\n")


@pytest.mark.parametrize(("name", "model"), [
    ("910B2", "huawei-ascend-910b2"), ("910B4", "huawei-ascend-910b4"), ("910A", "huawei-ascend-910"),
    ("910C", "huawei-ascend-910c"), ("310P3", "huawei-ascend-310p"), ("Ascend999", None),
    ("910B", None), ("910B2C-extra", None), ("Ascend910", None)])
def test_ascend_names_map_to_the_catalogue(name: str, model: str | None) -> None:
    assert device_model_of(name) == model


# -- slurm -------------------------------------------------------------------------------------


def slurm() -> SlurmCollector:
    cfg = SlurmSettings(enabled=True, partitions=[
        SlurmPartition(name="gpu-h100", pool_id="h100", device_model="nvidia-h100-sxm5-80gb"),
        SlurmPartition(name="cpu", pool_id="cpu", device_model="amd-epyc-9654", devices="cpu")])
    return SlurmCollector("dc-1", cfg, 60)


def test_slurm_jobs_become_start_usage_and_end_with_stable_ids() -> None:
    jobs = parse_sacct(fixture("sacct-mixed.txt"), CST).devices
    assert len(jobs) == 9
    collector = slurm()
    first = collector.events(jobs, NOW)
    first.commit()
    events = first.events
    valid(events)
    by_job: dict[str, list[dict[str, object]]] = {}
    for e in events:
        by_job.setdefault(e["data"]["job_id"], []).append(e["data"])
    assert set(by_job) == {"4812301", "4812302", "4812303", "4812304", "4812305", "4812306_3",
                           "4812309"}  # pending and unmapped partitions are skipped
    running = by_job["4812301"]
    assert [d["phase"] for d in running] == ["start", "usage"]
    assert running[1]["seq"] == 1 + 5423 // 60 and running[1]["devices"] == 8
    assert running[1]["device_seconds_total"] == 8 * 5423
    done = by_job["4812302"]
    assert [d["phase"] for d in done] == ["start", "end"] and done[1]["status"] == "succeeded"
    # 2480331 J in 1834 s is 1352 W: more than one H100 (700 W) can draw, so it is estimated
    watts = collector.meters["gpu-h100"].estimate_w
    assert done[1]["energy_kwh_total"] == pytest.approx(1834 * watts / 3.6e6, abs=1e-6)
    assert any("4812302" in w and "2480331" in w for w in first.warnings)
    failed = by_job["4812303"][1]  # 0 J: not accounted, estimated
    assert failed["energy_kwh_total"] == pytest.approx(2 * 97 * watts / 3.6e6, abs=1e-6)
    assert by_job["4812303"][1]["status"] == "failed" and by_job["4812303"][1]["devices"] == 2
    assert by_job["4812304"][1]["status"] == "cancelled" and by_job["4812304"][1]["devices"] == 4
    assert by_job["4812305"][0]["devices"] == 128 and by_job["4812305"][0]["pool_id"] == "cpu"
    assert by_job["4812306_3"][1]["status"] == "failed"  # TIMEOUT
    assert {d["tenant_id"] for d in by_job["4812309"]} == {"robotics-lab"}
    # the end event is stamped with sacct's End (Shanghai time)
    end = next(e for e in events if e["data"]["job_id"] == "4812302" and e["data"]["phase"] == "end")
    assert datetime.fromisoformat(end["time"]) == datetime(2026, 11, 20, 2, 32, 45, tzinfo=UTC)

    # a minute later: only the running jobs report again, with a higher seq and totals
    later = parse_sacct(fixture("sacct-mixed.txt").replace("|5423|", "|5483|"), CST).devices
    again = collector.events(later, NOW + timedelta(seconds=60)).events
    assert [(e["data"]["job_id"], e["data"]["phase"]) for e in again] == [("4812301", "usage")]
    assert again[0]["data"]["seq"] == running[1]["seq"] + 1

    # a restarted agent re-sends with the same ids: duplicates, never conflicting events
    fresh = slurm().events(jobs, NOW).events
    assert [e["id"] for e in fresh] == [e["id"] for e in events]


@pytest.mark.parametrize(("name", "rows", "messages"), [
    ("sacct-partial.txt", 1, ["line 2: 6 fields, expected 10"]),
    ("sacct-malformed.txt", 0, ["line 1: 1 fields", "line 2: 1 fields",
                                "line 3: ElapsedRaw '01:30:23' is not seconds"]),
])
def test_slurm_bad_rows_are_skipped_with_a_warning(name: str, rows: int, messages: list[str]) -> None:
    parsed = parse_sacct(fixture(name), CST)
    assert len(parsed.devices) == rows
    assert [m for m, w in zip(messages, parsed.skipped, strict=True) if m not in w] == []
    result = slurm().read(Output(fixture(name)), NOW)
    assert len(result.warnings) == len(messages)
    assert [e["data"]["phase"] for e in result.events] == (["start", "usage"] if rows else [])


def test_sacct_exiting_non_zero_with_rows_is_used(tmp_path: Path) -> None:
    rows = (FIXTURES / "sacct-mixed.txt").as_posix()
    script = f"import sys; sys.stdout.write(open({rows!r}).read()); print('sacct: error: x', file=sys.stderr); sys.exit(1)"
    cfg = SlurmSettings(enabled=True, command=[sys.executable, "-c", script], partitions=slurm().cfg.partitions)
    result = SlurmCollector("dc-1", cfg, 60).collect(NOW)
    assert {e["data"]["job_id"] for e in result.events} >= {"4812301", "4812302"}
    assert "exited with 1 (sacct: error: x); using the rows it printed" in result.warnings[0]


# -- linux -------------------------------------------------------------------------------------


def test_linux_busy_share_between_two_reads() -> None:
    texts = iter([fixture("proc-stat-8cpu.txt"), fixture("cpu-present-8.txt"),
                  fixture("proc-stat-8cpu-later.txt"), "0-15\n"])
    collector = LinuxCollector("dc-1", "cpu", "amd-epyc-9654", 15, read=lambda _p: next(texts))
    result = collector.collect(NOW)
    result.commit()
    first = result.events[0]["data"]
    second = collector.collect(NOW + timedelta(seconds=15)).events[0]["data"]
    assert first["devices_online"] == 8 and first["devices_total"] == 8
    assert first["busy_ratio"] < 0.01
    # cpuN: +500 user, +125 system, +375 idle in the later read
    assert second["busy_ratio"] == pytest.approx(625 / 1000, abs=1e-4)
    assert second["devices_allocated"] == 5 and second["devices_total"] == 16


def test_linux_reads_this_host() -> None:
    (event,) = LinuxCollector("dc-1", "cpu", "amd-epyc-9654", 15).collect(NOW).events
    valid([event])
    assert event["data"]["devices_online"] >= 1


@pytest.mark.parametrize(("name", "message"), [
    ("proc-stat-partial.txt", "line 3: 2 fields for cpu1"),
    ("proc-stat-malformed.txt", "line 2: a non-numeric field"),
])
def test_linux_bad_proc_stat_is_one_clear_line(name: str, message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        parse_proc_stat(fixture(name))


def test_linux_unreadable_file_and_cpu_lists() -> None:
    collector = LinuxCollector("dc-1", "cpu", "amd-epyc-9654", 15, proc_stat=Path("/nonexistent/stat"))
    with pytest.raises(CollectorError, match="cannot read /nonexistent/stat"):
        collector.collect(NOW)
    assert parse_cpu_list("0-7,16-23\n") == 16
    assert parse_cpu_list("0\n") == 1
    with pytest.raises(CollectorError):
        parse_cpu_list("zero")


# -- running commands --------------------------------------------------------------------------


def test_run_command_errors_are_one_line() -> None:
    with pytest.raises(CollectorError, match="no-such-tool-xyz not found on PATH"):
        run_command(["no-such-tool-xyz"], 5)
    with pytest.raises(CollectorError, match="exited with 3: boom"):
        run_command([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 5)
    printed = run_command([sys.executable, "-c", "import sys; print('row'); sys.exit(2)"], 5)
    assert printed.stdout == "row\n" and "exited with 2 (row)" in str(printed.warning)
    with pytest.raises(CollectorError, match=r"did not answer within 0\.2 s"):
        run_command([sys.executable, "-c", "import time; time.sleep(5)"], 0.2)
    assert run_command([sys.executable, "-c", "print('ok')"], 5).stdout == "ok\n"


def test_nvidia_collector_runs_its_command() -> None:
    csv = (FIXTURES / "nvidia-smi-8xh100.csv").as_posix()
    collector = NvidiaCollector("dc-1", "gpu", 15, command=["cat", csv])
    assert collector.collect(NOW).events[0]["data"]["devices_total"] == 8
    broken = NvidiaCollector("dc-1", "gpu", 15, command=["cat", (FIXTURES / "nvidia-smi-no-devices.txt").as_posix()])
    with pytest.raises(CollectorError, match="nvidia: nvidia-smi found no NVIDIA devices"):
        broken.collect(NOW)
