"""Worker throughput against a raw baseline, in one process, on one preloaded topic. Benchmark (I/O).

Baseline: a confluent-kafka batch consumer + json.loads + a chDB insert of the same events into
a table of the same stored columns (no validation) + a synchronous commit per batch: the
minimum any worker must do. Worker: the real faust app with the batch consumer and the real
handler (decode, normalise, dead letters, ledger, sink). Both read the same events from the same
local broker and write to the same chDB engine (a fresh database per run). The runs are
interleaved (baseline, worker, baseline, worker, ...) so that a shared machine's load falls on
both alike; each run prints its rate and the load average. Then the worker once more on the
first `--served-events`, writing through `surplus store serve` (clickhouse-connect http://).
Prints events/s for each and the ratio worker / baseline (goal in-process: 0.8 or better, over
1,000,000 events). Machines are noisy: compare the ratio, not the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def preload(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 20,
                         "enable.idempotence": True, "acks": "all"})
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    for i in range(n):
        dc = f"dc-{i % 200:03d}"
        event = {"specversion": "1.0", "id": f"cap-{i}", "source": f"//cpn/dc/{dc}", "type": "cpn.capacity.v1",
                 "time": (t0 + timedelta(seconds=15 * (i // 200))).isoformat().replace("+00:00", "Z"),
                 "datacontenttype": "application/json",
                 "data": {"dc_id": dc, "pool_id": f"p{i % 3}", "device_model": "nvidia-h100-sxm5-80gb",
                          "devices_total": 512, "devices_online": 500, "devices_allocated": i % 500,
                          "busy_ratio": 0.5, "interval_s": 15}}
        while True:
            try:
                producer.produce(topic, json.dumps(event).encode(), key=dc.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(120)


def _stored() -> tuple[str, ...]:
    """The columns the worker writes to capacity_samples (the registry's), so both write the same."""
    from schemas.registry import CAPACITY_COLUMNS

    return CAPACITY_COLUMNS


def baseline(bootstrap: str, topic: str, n: int, client: object, database: str) -> float:
    """The same events into a table of the same stored columns: consume, json.loads, columnar insert."""
    from confluent_kafka import Consumer

    from schemas.catalogue import load_catalogue

    peaks = {d.id: (d.peak("fp16"), d.peak("fp32"), d.peak("fp64")) for d in load_catalogue().devices.values()}
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")  # type: ignore[attr-defined]
    client.command(  # type: ignore[attr-defined]
        f"CREATE TABLE {database}.capacity (dc_id LowCardinality(String), pool_id String, event_id String, "
        "time DateTime64(3, 'UTC'), interval_s UInt32, device_model LowCardinality(String), devices_total UInt32, "
        "devices_online UInt32, devices_allocated UInt32, busy_ratio Nullable(Float64), peak_tflops_fp16 Float64, "
        "peak_tflops_fp32 Float64, peak_tflops_fp64 Float64, idle_pflops_fp16 Float64, idle_pflops_fp32 Float64, "
        "idle_pflops_fp64 Float64, online_pflops_fp16 Float64, online_pflops_fp32 Float64, "
        "online_pflops_fp64 Float64, received_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY (dc_id, event_id)")
    stored = _stored()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"base-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    started = None
    while seen < n:
        msgs = consumer.consume(num_messages=20000, timeout=1.0)
        if not msgs:
            continue
        if started is None:
            started = time.perf_counter()
        now = datetime.now(UTC)
        rows = []
        for m in msgs:
            if m.error():
                continue
            e = json.loads(m.value())
            d = e["data"]
            p16, p32, p64 = peaks[d["device_model"]]
            online = d["devices_online"]
            idle = online - d["devices_allocated"]
            rows.append((d["dc_id"], d["pool_id"], e["id"], datetime.fromisoformat(e["time"]), d["interval_s"],
                         d["device_model"], d["devices_total"], online, d["devices_allocated"],
                         d.get("busy_ratio"), p16, p32, p64, idle * p16 / 1000, idle * p32 / 1000, idle * p64 / 1000,
                         online * p16 / 1000, online * p32 / 1000, online * p64 / 1000, now))
        client.insert(f"{database}.capacity", rows, column_names=list(stored))  # type: ignore[attr-defined]
        consumer.commit(asynchronous=False)
        seen += len(msgs)
    consumer.close()
    assert started is not None
    return seen / (time.perf_counter() - started)


def worker(bootstrap: str, prefix: str, n: int, client: object, url: str, data_dir: Path) -> float:
    from schemas.catalogue import load_catalogue
    from schemas.prices import PriceBook
    from schemas.topics import Topics
    from streams.app import build_app
    from streams.settings import WorkerSettings
    from streams.sink import Sink
    from streams.worker import Handler
    from surplus.kafka.connection import KafkaConnection
    from surplus.store import parse_url

    target = parse_url(url)
    settings = WorkerSettings(kafka=KafkaConnection(bootstrap=bootstrap), clickhouse_url=url, topic_prefix=prefix,
                              group_id=f"bench-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                              metrics_interval_s=3600, session_timeout_s=10)
    (data_dir / settings.group_id).mkdir(parents=True, exist_ok=True)
    handler = Handler(sink=Sink(client, target.database), catalogue=load_catalogue(),  # type: ignore[arg-type]
                      prices=PriceBook.load(), deadletter_topic=Topics(prefix).deadletter)
    marks: dict[str, float] = {}
    inner = handler.prepare

    async def prepare(records, barrier=None):  # type: ignore[no-untyped-def]
        marks.setdefault("first", time.perf_counter())  # the first batch's preparation starts
        return await inner(records, barrier)

    handler.prepare = prepare  # type: ignore[method-assign]
    handler.observers.append(lambda _batch, _now: marks.__setitem__("last", time.perf_counter()))  # written

    async def run() -> None:
        app = build_app(settings, handler, Topics(prefix).telemetry)
        app.finalize()
        await app.start()
        try:
            deadline = time.monotonic() + 600
            while handler.metrics.events_in < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await app.stop()

    asyncio.run(run())
    assert handler.metrics.events_in >= n, f"worker processed {handler.metrics.events_in} of {n}"
    return handler.metrics.events_in / (marks["last"] - marks["first"])


def served_store(path: Path, database: str) -> tuple[subprocess.Popen[str], str]:
    """`surplus store serve` on its own store and a free port: (process, writer URL)."""
    from surplus.kafka.ports import free_port

    proc = subprocess.Popen([sys.executable, "-m", "surplus.cli", "store", "serve", "--url",
                             f"chdb://{path}?database={database}", "--port", str(free_port())],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "SURPLUS_WRITER_PASSWORD": uuid.uuid4().hex})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http://"):
            return proc, line.strip()
    raise SystemExit(f"store serve exited with {proc.wait()}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved baseline/worker pairs")
    parser.add_argument("--served-events", type=int, default=200_000,
                        help="events for the served-store run (0: skip it)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a local one")
    args = parser.parse_args()

    from streams.app import tune_gc
    from surplus.kafka.admin import ensure_topics
    from surplus.kafka.local import LocalKafka
    from surplus.kafka.ports import free_port
    from surplus.store import connect, migrate

    tune_gc()  # the worker's process setting, applied to both paths alike

    tmp = Path(tempfile.mkdtemp(prefix="surplus-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = LocalKafka(tmp / "kafka", port=free_port(), controller_port=free_port(), heap_mb=1024,
                            progress=lambda _m: None)
        bootstrap = broker.up()
    try:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(bootstrap, [prefix + t for t in ("registry", "capacity", "power", "jobs", "heartbeat",
                                                        "deadletter")], partitions=6)
        print(f"preloading {args.events:,} capacity events into {prefix}capacity ...", flush=True)
        preload(bootstrap, prefix + "capacity", args.events)
        pairs: list[tuple[float, float]] = []
        for round_ in range(1, args.rounds + 1):
            url = f"chdb://{tmp / 'chdb'}?database=bench_worker{round_}"
            client, target = connect(url)
            migrate(client, target.database)
            print(f"round {round_}: baseline ... ({_load()})", flush=True)
            base = baseline(bootstrap, prefix + "capacity", args.events, client, f"bench_base{round_}")
            print(f"round {round_}: baseline {base:,.0f} events/s; worker ... ({_load()})", flush=True)
            work = worker(bootstrap, prefix, args.events, client, url, tmp / f"faust{round_}")
            print(f"round {round_}: worker {work:,.0f} events/s, ratio {work / base:.2f} ({_load()})", flush=True)
            pairs.append((base, work))
        served = None
        if args.served_events:
            server, served_url = served_store(tmp / "served", "bench_worker")
            try:
                http_client, _ = connect(served_url)
                served = worker(bootstrap, prefix, args.served_events, http_client, served_url, tmp / "faust-served")
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(120)
        base_all = sum(b for b, _ in pairs) / len(pairs)
        work_all = sum(w for _, w in pairs) / len(pairs)
        print(f"\n{args.events:,} events, {args.rounds} interleaved rounds; {_load()}")
        print(f"{'path':<60}{'events/s':>12}")
        for round_, (base, work) in enumerate(pairs, 1):
            print(f"{f'round {round_} baseline: confluent-kafka + json + chDB insert':<60}{base:>12,.0f}")
            print(f"{f'round {round_} worker: faust + decode + sink, chDB in-process':<60}{work:>12,.0f}")
        if served is not None:
            print(f"{f'worker via surplus store serve ({args.served_events:,} events)':<60}{served:>12,.0f}")
        for round_, (base, work) in enumerate(pairs, 1):
            print(f"ratio worker/baseline, in-process, round {round_}: {work / base:.2f} (goal >= 0.80)")
        print(f"ratio worker/baseline, in-process, mean rates: {work_all / base_all:.2f} (goal >= 0.80)")
        if served is not None:
            print(f"ratio worker via served store / baseline: {served / base_all:.2f}")
    finally:
        if broker is not None:
            broker.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
