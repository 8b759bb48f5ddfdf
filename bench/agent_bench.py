"""The agent's footprint and its publish path against a raw producer. Benchmark (I/O).

(a) Footprint: `python -m agents` in a child process, one DC with 50 simulated pools at the
    default cadences (capacity 15 s, power 60 s, jobs 60 s, heartbeat 30 s) in real time for
    `--seconds` (60); RSS (peak and at the end) and CPU % of one core after start-up.
(b) Publish path: the same pre-built events published as fast as possible (1) by the agent's
    path (serialise, spool append, idempotent producer, delivery report, ack) and (2) by a raw
    confluent-kafka producer loop with the same settings and the same serialised bytes, in the
    same run against the same broker; events/s of each (all delivered) and the ratio.

Uses `--bootstrap`, else starts a local broker on free ports in a temporary directory. Goals:
RSS under 50 MB, CPU under 2 %, publish path within 2x of the raw producer (ratio >= 0.5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.fleet import national_fleet
from agents.records import CloudEvent, serialise, to_record
from schemas.topics import Topics

MODELS = ("nvidia-h100-sxm5-80gb", "nvidia-h20-96gb", "huawei-ascend-910b2", "huawei-ascend-910b3",
          "hygon-dcu-k100", "cambricon-mlu370-x8", "cambricon-mlu590", "huawei-kunpeng-920-6426",
          "hygon-c86-7285", "amd-epyc-9654")


def footprint_config(bootstrap: str, prefix: str, spool: Path, pools: int) -> str:
    lines = [f"""[dc]
dc_id = "bench-dc-01"
name = "Bench DC"
operator = "Bench"
province = "CN-GZ"
hub = "gz"
cluster = "guian"
lat = 26.4
lon = 106.3
racks_total = 5000

[kafka]
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"

[spool]
path = "{spool}"

[collectors.simulator]
enabled = true
seed = 1
"""]
    for i in range(pools):
        model = MODELS[i % len(MODELS)]
        cpu = model.startswith(("huawei-kunpeng", "hygon-c86", "amd"))
        lines.append(f"""[[collectors.simulator.pools]]
pool_id = "pool-{i:02d}"
device_model = "{model}"
devices = {2048 if cpu else 128}
profile = "{'cloud' if cpu else 'training'}"
""")
    return "\n".join(lines)


def measure_footprint(bootstrap: str, prefix: str, work: Path, pools: int,
                      seconds: float) -> dict[str, float]:
    import psutil

    config = work / "footprint.toml"
    config.write_text(footprint_config(bootstrap, prefix, work / "spool-footprint", pools))
    log = open(work / "footprint.log", "wb")  # noqa: SIM115 (closed below)
    child = subprocess.Popen([sys.executable, "-m", "agents", "--config", str(config), "--run-for",
                              str(seconds)], stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(child.pid)
    warmup, rss_peak, rss = 5.0, 0.0, 0.0
    started = time.monotonic()
    cpu0 = None
    try:
        while child.poll() is None:
            try:
                rss = proc.memory_info().rss / 2**20
                if cpu0 is None and time.monotonic() - started >= warmup:
                    times = proc.cpu_times()
                    cpu0 = (times.user + times.system, time.monotonic())
                if cpu0 is not None:
                    times = proc.cpu_times()
                    cpu1 = (times.user + times.system, time.monotonic())
            except psutil.NoSuchProcess:
                break
            rss_peak = max(rss_peak, rss)
            time.sleep(0.5)
    finally:
        child.wait(120)
        log.close()
    if child.returncode != 0 or cpu0 is None:
        sys.exit(f"the agent failed (exit {child.returncode}); see {work / 'footprint.log'}:\n"
                 + (work / "footprint.log").read_text()[-2000:])
    cpu_pct = 100 * (cpu1[0] - cpu0[0]) / max(1e-9, cpu1[1] - cpu0[1])
    text = (work / "footprint.log").read_text()
    spooled = int(text.rsplit("stopped: ", 1)[1].split(" spooled")[0]) if "stopped: " in text else 0
    return {"rss_peak_mb": rss_peak, "rss_end_mb": rss, "cpu_pct": cpu_pct, "events": spooled}


def make_events(n: int) -> list[CloudEvent]:
    """`n` events from simulated DCs (capacity, power, jobs), generated without Kafka."""
    from agents.collectors.simulator import SimulatedDataCenter

    start = datetime(2026, 11, 20, tzinfo=UTC)
    events: list[CloudEvent] = []
    for dc in national_fleet(40, seed=3):
        model = SimulatedDataCenter(dc.dc, dc.sim, start=start)
        events += model.events_between(start, start + timedelta(hours=2))
        if len(events) >= n:
            break
    return events[:n]


def raw_producer(bootstrap: str, prefix: str, events: list[CloudEvent]) -> float:
    """events/s of a plain confluent-kafka loop: same settings, same bytes, every delivery served."""
    from confluent_kafka import Producer

    topics = Topics(prefix)
    items = [(topics.for_type(e["type"]), serialise(e), str(e["data"]["dc_id"]).encode()) for e in events]
    headers = [("content-type", b"application/cloudevents+json")]
    delivered = 0

    def report(err: object, _msg: object) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "compression.type": "lz4", "linger.ms": 50, "message.timeout.ms": 0})
    started = time.perf_counter()
    for topic, value, key in items:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    assert delivered == len(items), (delivered, len(items))
    return len(items) / elapsed


def agent_path(bootstrap: str, prefix: str, events: list[CloudEvent], spool_dir: Path,
               serialised: bool) -> float:
    """events/s through the agent's outbox: spool append, producer, delivery reports, acks."""
    from agents.settings import KafkaSettings, SpoolSettings
    from agents.wiring import build_outbox

    outbox = build_outbox(KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix),
                          SpoolSettings(path=spool_dir), client_id="bench")
    records = [to_record(e) for e in events] if serialised else []
    started = time.perf_counter()
    for i in range(0, len(events), 1000):
        if serialised:
            outbox.spool.append(records[i:i + 1000])
            outbox.pump()
        else:
            outbox.put(events[i:i + 1000])
    assert outbox.drain(120), f"{outbox.backlog} events undelivered"
    elapsed = time.perf_counter() - started
    outbox.close(5)
    assert outbox.counts.delivered >= len(events)
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker (default: start a local one)")
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="footprint run, real seconds")
    parser.add_argument("--events", type=int, default=100_000, help="events for the publish path")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (b)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if not bootstrap:
            from surplus.kafka.local import LocalKafka
            from surplus.kafka.ports import free_port

            broker = LocalKafka(work / "kafka", port=free_port(), controller_port=free_port(),
                                progress=lambda m: print(m, file=sys.stderr))
            bootstrap = broker.up()
        try:
            run(args, bootstrap, work)
        finally:
            if broker is not None:
                broker.down()


def run(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    import gc
    import statistics

    from surplus.kafka.admin import ensure_topics

    tag = f"b{os.getpid()}"
    ensure_topics(bootstrap, Topics(f"{tag}foot.").telemetry, partitions=3)
    print(f"(a) footprint: one agent, {args.pools} simulated pools, real time, {args.seconds:.0f} s ...",
          file=sys.stderr)
    foot = measure_footprint(bootstrap, f"{tag}foot.", work, args.pools, args.seconds)
    print(f"(b) publish path: {args.events} events, {args.rounds} rounds ...", file=sys.stderr)
    events = make_events(args.events)
    gc.freeze()  # the input events are the fixture, not the system under test: keep them out of GC
    rates: dict[str, list[float]] = {"raw": [], "dicts": [], "bytes": []}
    for i in range(args.rounds):  # interleaved: a noisy neighbour hits every path alike
        for name in rates:
            prefix = f"{tag}{name}{i}."
            ensure_topics(bootstrap, Topics(prefix).telemetry, partitions=3)
            if name == "raw":
                rates[name].append(raw_producer(bootstrap, prefix, events))
            else:
                rates[name].append(agent_path(bootstrap, prefix, events, work / f"spool-{prefix}",
                                              serialised=name == "bytes"))
    raw, agent, agent_bytes = (max(rates[n]) for n in ("raw", "dicts", "bytes"))
    ratio = statistics.median(a / r for a, r in zip(rates["dicts"], rates["raw"], strict=True))
    ratio_bytes = statistics.median(a / r for a, r in zip(rates["bytes"], rates["raw"], strict=True))
    rows = [
        ("(a) RSS peak / at end", f"{foot['rss_peak_mb']:.1f} / {foot['rss_end_mb']:.1f} MB", "< 50 MB",
         foot["rss_peak_mb"] < 50),
        ("(a) CPU, one core (after 5 s start-up)", f"{foot['cpu_pct']:.2f} %", "< 2 %",
         foot["cpu_pct"] < 2),
        ("(a) events published", f"{foot['events']:.0f} in {args.seconds:.0f} s", "", True),
        ("(b) raw confluent-kafka producer (best)", f"{raw:,.0f} events/s", "", True),
        ("(b) agent: dicts -> spool -> Kafka (best)", f"{agent:,.0f} events/s", "", True),
        ("(b) agent: bytes -> spool -> Kafka (best)", f"{agent_bytes:,.0f} events/s", "", True),
        ("(b) agent / raw, dicts (median of rounds)", f"{ratio:.2f}", ">= 0.5", ratio >= 0.5),
        ("(b) agent / raw, bytes (median of rounds)", f"{ratio_bytes:.2f}", ">= 0.5", ratio_bytes >= 0.5),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nagent benchmark ({args.pools} pools; {len(events)} events x {args.rounds} rounds; "
          f"broker {bootstrap}; {os.cpu_count()} cores)")
    print(f"{'measure'.ljust(width)}  {'value':>24}  {'goal':>8}")
    for name, value, goal, ok in rows:
        mark = "" if not goal else ("  ok" if ok else "  MISSED")
        print(f"{name.ljust(width)}  {value:>24}  {goal:>8}{mark}")
    print("rounds, events/s: " + "; ".join(
        f"{n} " + " ".join(f"{r:,.0f}" for r in v) for n, v in rates.items()))


if __name__ == "__main__":
    main()
