"""The national load test: a simulated fleet through the real broker into N workers and a served store. Benchmark (I/O).

Per worker count N (default 1 and 2), on a fresh local broker (6 partitions per topic) and a
fresh `surplus store serve`:

1. **cost**: the simulator alone, on a manual clock, through the agents' real spool and outbox
   with a publisher that acknowledges at once: its events per simulated second (the fleet's
   nominal rate) and per CPU second of its own (what the simulator costs, apart from the rest);
2. **steady**: the fleet of `--dcs` simulated DCs (agents.fleet.national_fleet) publishing in real
   time through the agents' spool and producer (a child process), into N `surplus streams worker`
   processes writing to the served store, for `--steady-s`. `--clock-speed K` runs the fleet's
   clock K times as fast (it starts (K-1) x the run in the past and reaches the present at its
   end): K times the events per second from the same DCs, e.g. 8 for about the national
   25,000 events/s from 10,000 DCs of national_fleet's 2-4 pools;
3. **burst**: for `--burst-s` more, a reconnecting region on top: `--burst-dcs` other DCs drain
   `--burst-span-s` of spooled telemetry as fast as their producer goes (a second child);
4. **drain**: until the workers have committed everything (at most `--drain-s`).

Every `--sample-s` it samples the broker's end offsets (published), the group's committed
offsets (consumed), the lag between them, each worker's RSS and CPU time. Every `--probe-s` a
probe capacity event (its own DC, a minute of 2001 no other event has) is published and its
first appearance in `national_surplus_minute` on the served store is timed: event->queryable
latency. Prints the timeline and a summary: sustained events/s, the lag's trend in the steady
phase, latency p50/p99, each worker's peak RSS (VmHWM), events per worker CPU second and per
simulator CPU second, and the cores the nominal rate needs at those costs.

Machines are noisy, and this one may be shared: the load average is printed with every sample.
`make loadtest` runs the full form (tests/integration/test_loadtest.py, marked `loadtest`); a
short form runs inside `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
TELEMETRY = ("registry", "capacity", "power", "jobs", "heartbeat")
PROBE_DC = "probe-dc"
# issue 17's national figure: 10,000 DCs x ~10 pools every 15 s, power, heartbeats, job usage
NATIONAL_EVENTS_PER_S = 25_000
PROBE_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)  # probe k stands alone in minute k of 2001


# --- the simulator, in a child process ------------------------------------------------------


def _fleet(dcs: int, seed: int, rename: str | None) -> list[Any]:
    from agents.fleet import SimDC, national_fleet

    fleet = national_fleet(dcs, seed=seed)
    if rename:
        fleet = [SimDC(d.dc.model_copy(update={"dc_id": f"{rename}-{i:05d}"}), d.sim) for i, d in enumerate(fleet)]
    return fleet


class _Acknowledging:
    """A publisher that delivers every record at once (the cost phase: no broker)."""

    def __init__(self, on_delivery: Any) -> None:
        self.on_delivery, self.pending = on_delivery, []

    def send(self, rec: Any) -> bool:
        self.pending.append(rec)
        return True

    def poll(self, timeout_s: float = 0.0) -> int:
        done, self.pending = self.pending, []
        for rec in done:
            self.on_delivery(rec, None)
        return len(done)

    def reset(self) -> None:
        self.pending = []

    def close(self, timeout_s: float) -> int:
        self.poll()
        return 0


def simulate_cost(dcs: int, seed: int, seconds: float, spool: Path) -> dict[str, float]:
    """The fleet on a manual clock through a real spool and outbox, no broker: events per
    simulated second and per CPU second of this process."""
    from agents.clock import ManualClock
    from agents.outbox import Outbox
    from agents.run import Agent
    from agents.settings import Intervals, SpoolSettings
    from agents.wiring import build_spool, simulator_for

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
    clock = ManualClock(start)
    outbox = Outbox(build_spool(SpoolSettings(path=spool, fsync="never")), _Acknowledging)
    intervals = Intervals()
    agents = [Agent(d.dc, [simulator_for(d, intervals, start)], outbox=outbox, clock=clock, intervals=intervals)
              for d in _fleet(dcs, seed, None)]
    cpu0 = time.process_time()
    events = 0
    t = start
    while t < start + timedelta(seconds=seconds):
        t += timedelta(seconds=1)
        clock.set(t)
        events += sum(a.step(t) for a in agents)
        outbox.pump()
    cpu = time.process_time() - cpu0
    outbox.close(10)
    return {"events": events, "simulated_s": seconds, "cpu_s": cpu}


def simulate_live(args: argparse.Namespace) -> dict[str, float]:
    """The fleet in (accelerated) real time through the real spool and producer, for `seconds` of its clock."""
    from agents.clock import SimClock
    from agents.run import Fleet
    from agents.settings import KafkaSettings, SpoolSettings

    fleet_dcs = _fleet(args.dcs, args.seed, args.rename)
    start = datetime.now(UTC) - timedelta(seconds=args.start_ago)
    clock = SimClock(start, speed=args.speed, not_after_now=True)
    fleet = Fleet.simulated(fleet_dcs, kafka=KafkaSettings(bootstrap=args.bootstrap, topic_prefix=args.prefix),
                            spool=SpoolSettings(path=Path(args.spool), fsync="never"), clock=clock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cpu0 = time.process_time()
    # the end is fixed on the clock from its start: building 10,000 agents takes minutes, and
    # running `seconds` from after the build made the simulator overrun its phase by as much
    left = args.seconds - (clock.now() - start).total_seconds()
    if left > 0:
        fleet.run_for(left, stop)
    fleet.close(60)
    counts = fleet.outbox.counts
    return {"spooled": counts.spooled, "delivered": counts.delivered, "cpu_s": time.process_time() - cpu0}


# --- the driver -----------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the fleet started
    phase: str
    published: int
    committed: int
    rss_mb: list[float]
    load: float

    @property
    def lag(self) -> int:
        return max(0, self.published - self.committed)


@dataclass
class Phase:
    workers: int
    samples: list[Sample] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    probes_lost: int = 0
    peak_rss_mb: list[float] = field(default_factory=list)
    worker_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    consumed: int = 0
    caught_up: bool = False
    notes: list[str] = field(default_factory=list)


def _load() -> float:
    return os.getloadavg()[0]


def _free_port() -> int:
    from surplus.kafka.ports import free_port

    return free_port()


class _Offsets:
    """Published (end offsets) and committed offsets of the telemetry topics, summed."""

    def __init__(self, bootstrap: str, prefix: str, group: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        meta = self.consumer.list_topics(timeout=10)
        self.tps = [TopicPartition(prefix + t, p) for t in TELEMETRY for p in meta.topics[prefix + t].partitions]

    def read(self) -> tuple[int, int]:
        end = sum(self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self.tps)
        committed = sum(max(0, tp.offset) for tp in self.consumer.committed(self.tps, timeout=10))
        return end, committed

    def close(self) -> None:
        self.consumer.close()


def _members(bootstrap: str, group: str) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        [future] = admin.describe_consumer_groups([group], request_timeout=10).values()
        description = future.result()
        return len(description.members) if str(description.state).endswith("STABLE") else 0
    except Exception:
        return 0


def _probe_event(k: int) -> bytes:
    at = PROBE_EPOCH + timedelta(minutes=k)
    return json.dumps({
        "specversion": "1.0", "id": f"probe-{k}", "source": f"//cpn/dc/{PROBE_DC}", "type": "cpn.capacity.v1",
        "time": at.isoformat().replace("+00:00", "Z"), "datacontenttype": "application/json",
        "data": {"dc_id": PROBE_DC, "pool_id": f"p{k}", "device_model": "nvidia-h100-sxm5-80gb",
                 "devices_total": 8, "devices_online": 8, "devices_allocated": 0, "interval_s": 15}}).encode()


def _probes(bootstrap: str, prefix: str, store_url: str, every_s: float, stop: threading.Event,
            phase: Phase, timeout_s: float) -> None:
    """Publish a probe, time its first appearance in national_surplus_minute, repeat."""
    from confluent_kafka import Producer

    from surplus.store import connect

    client, target = connect(store_url)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    k = 0
    while not stop.is_set():
        k += 1
        minute = (PROBE_EPOCH + timedelta(minutes=k)).strftime("%Y-%m-%d %H:%M:%S")
        sql = (f"SELECT count() FROM {target.database}.national_surplus_minute "
               f"WHERE ts = toDateTime('{minute}', 'UTC')")
        sent = time.monotonic()
        producer.produce(prefix + "capacity", _probe_event(k), key=PROBE_DC.encode(),
                         headers=[("content-type", b"application/cloudevents+json")])
        producer.flush(30)
        seen = None
        while not stop.is_set() and time.monotonic() - sent < timeout_s:
            try:
                if client.query(sql).result_rows[0][0]:
                    seen = time.monotonic() - sent
                    break
            except Exception as exc:  # a query refused under load counts as not yet queryable
                phase.notes.append(f"probe query failed: {str(exc).splitlines()[0][:120]}")
            time.sleep(0.25)
        if seen is None:
            if not stop.is_set():
                phase.probes_lost += 1
        else:
            phase.latencies_s.append(seen)
        stop.wait(max(0.0, every_s - (time.monotonic() - sent)))


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stop(proc: subprocess.Popen[Any] | None, timeout_s: float = 60) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _child(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def _simulator(bootstrap: str, prefix: str, tmp: Path, name: str, *, dcs: int, seed: int, seconds: float,
               speed: float = 1.0, start_ago: float = 0.0, rename: str | None = None) -> subprocess.Popen[bytes]:
    argv = [str(Path(__file__).resolve()), "simulate", "--bootstrap", bootstrap, "--prefix", prefix,
            "--dcs", str(dcs), "--seed", str(seed), "--seconds", str(seconds), "--speed", str(speed),
            "--start-ago", str(start_ago), "--spool", str(tmp / f"spool-{name}"),
            "--result", str(tmp / f"{name}.json")]
    if rename:
        argv += ["--rename", rename]
    return _child(argv, tmp / f"{name}.log")


def run_phase(workers: int, args: argparse.Namespace, out: Any) -> Phase:
    """One full run with `workers` workers on a fresh broker and store."""
    import psutil

    from surplus.kafka.admin import ensure_topics
    from surplus.kafka.local import LocalKafka

    phase = Phase(workers)
    tmp = Path(tempfile.mkdtemp(prefix=f"surplus-load{workers}-"))
    broker = LocalKafka(tmp / "kafka", port=_free_port(), controller_port=_free_port(), heap_mb=args.broker_heap_mb,
                        progress=lambda _m: None)
    bootstrap = broker.up()
    store: subprocess.Popen[str] | None = None
    procs: list[subprocess.Popen[bytes]] = []
    sims: list[tuple[str, subprocess.Popen[bytes]]] = []
    stop = threading.Event()
    prober = None
    offsets = None
    try:
        prefix = f"load{uuid.uuid4().hex[:6]}."
        group = f"load-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, [prefix + t for t in (*TELEMETRY, "deadletter")], partitions=args.partitions)
        with open(tmp / "store.log", "ab") as handle:
            store = subprocess.Popen([sys.executable, "-m", "surplus.cli", "store", "serve", "--url",
                                      f"chdb://{tmp / 'store'}?database=load", "--port", str(_free_port())],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=handle, text=True,
                                     env={**os.environ, "SURPLUS_WRITER_PASSWORD": uuid.uuid4().hex})
        assert store.stdout is not None
        url = next((line.strip() for line in store.stdout if line.startswith("http://")), None)
        if url is None:
            raise SystemExit(f"surplus store serve exited; see {tmp / 'store.log'}")
        env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "CLICKHOUSE_URL": url, "SURPLUS_TOPIC_PREFIX": prefix,
               "SURPLUS_GROUP_ID": group, "SURPLUS_PARTITIONS": str(args.partitions),
               "SURPLUS_SESSION_TIMEOUT_S": "20", "SURPLUS_METRICS_INTERVAL_S": "10"}
        for i in range(workers):
            procs.append(_worker(env, tmp, i))
            deadline = time.monotonic() + 180
            while _members(bootstrap, group) < i + 1:
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise SystemExit(f"worker {i} did not join the group; see {tmp / f'worker{i}.log'}")
                time.sleep(1)
        offsets = _Offsets(bootstrap, prefix, group)
        handles = [psutil.Process(p.pid) for p in procs]
        total_s = args.steady_s + args.burst_s
        started = time.monotonic()
        k = args.clock_speed  # the fleet's clock K x as fast, reaching the present at the end
        sims.append(("live", _simulator(bootstrap, prefix, tmp, "live", dcs=args.dcs, seed=args.seed,
                                        seconds=total_s * k, speed=k, start_ago=(k - 1) * total_s)))
        prober = threading.Thread(target=_probes, name="probes", daemon=True,
                                  args=(bootstrap, prefix, url, args.probe_s, stop, phase, args.probe_timeout_s))
        prober.start()
        burst_started = False
        clock = f" (clock x{args.clock_speed:g})" if args.clock_speed != 1 else ""
        print(f"\n== {workers} worker(s), {args.dcs:,} DCs{clock}: steady {args.steady_s:g} s, "
              f"burst {args.burst_s:g} s (+{args.burst_dcs:,} DCs draining {args.burst_span_s:g} s of spool) ==",
              file=out, flush=True)
        print(f"{'t s':>7} {'phase':<7}{'published':>11}{'committed':>11}{'lag':>9}{'in/s':>9}  rss MB   load",
              file=out, flush=True)
        last: Sample | None = None
        while True:
            elapsed = time.monotonic() - started
            if not burst_started and elapsed >= args.steady_s and args.burst_s > 0:
                sims.append(("burst", _simulator(
                    bootstrap, prefix, tmp, "burst", dcs=args.burst_dcs, seed=args.seed + 1, rename="burst",
                    seconds=args.burst_span_s, speed=args.burst_span_s / args.burst_s,
                    start_ago=args.burst_span_s)))
                burst_started = True
            if elapsed > total_s + args.sim_grace_s:
                for _, p in sims:  # a simulator past its end (a slow last pass): stopped, as an operator would
                    if p.poll() is None:
                        phase.notes.append(f"simulator {p.pid} overran its end by {args.sim_grace_s:g} s: stopped")
                        p.send_signal(signal.SIGTERM)
            running = any(p.poll() is None for _, p in sims)
            name = "steady" if elapsed < args.steady_s else ("burst" if running else "drain")
            published, committed = offsets.read()
            rss = [h.memory_info().rss / 2**20 for h in handles]
            sample = Sample(elapsed, name, published, committed, rss, _load())
            rate = ((sample.committed - last.committed) / (sample.t - last.t)) if last else 0.0
            phase.samples.append(sample)
            print(f"{elapsed:7.0f} {name:<7}{published:>11,}{committed:>11,}{sample.lag:>9,}{rate:>9,.0f}  "
                  f"{'/'.join(f'{r:.0f}' for r in rss):<8} {sample.load:.1f}", file=out, flush=True)
            last = sample
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise SystemExit(f"worker {i} exited ({p.returncode}); see {tmp / f'worker{i}.log'}")
            if not running and (sample.lag == 0 or elapsed > total_s + args.drain_s):
                phase.caught_up = sample.lag == 0
                break
            time.sleep(args.sample_s)
        stop.set()
        prober.join(args.probe_timeout_s + 30)
        phase.consumed = last.committed if last else 0
        phase.peak_rss_mb = [_peak_rss_mb(p.pid) for p in procs]
        phase.worker_cpu_s = sum(h.cpu_times().user + h.cpu_times().system for h in handles)
        for name, proc in sims:
            proc.wait(120)
            result = tmp / f"{name}.json"
            if result.exists():
                phase.sim_cpu_s += json.loads(result.read_text())["cpu_s"]
        return phase
    finally:
        stop.set()
        for _, proc in sims:
            _stop(proc)
        for proc in procs:
            _stop(proc)
        if offsets is not None:
            offsets.close()
        _stop(store)
        broker.down()


def _worker(env: dict[str, str], tmp: Path, i: int) -> subprocess.Popen[bytes]:
    worker_env = {**env, "SURPLUS_WORKER_ID": f"load-{i}", "SURPLUS_DATA_DIR": str(tmp / f"faust{i}")}
    with open(tmp / f"worker{i}.log", "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "surplus.cli", "streams", "worker"], cwd=REPO,
                                env=worker_env, stdout=handle, stderr=subprocess.STDOUT)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _trend_per_min(samples: list[Sample]) -> float:
    """The least-squares slope of the lag, events per minute."""
    if len(samples) < 3:
        return 0.0
    return statistics.linear_regression([s.t for s in samples], [float(s.lag) for s in samples]).slope * 60


def summarise(phase: Phase, cost: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    steady = [s for s in phase.samples if s.phase == "steady"]
    second_half = steady[len(steady) // 2:]
    span = (steady[-1].t - steady[0].t) if len(steady) > 1 else 0.0
    sustained = (steady[-1].committed - steady[0].committed) / span if span else 0.0
    published_rate = (steady[-1].published - steady[0].published) / span if span else 0.0
    burst = [s for s in phase.samples if s.phase in ("burst", "drain")]
    burst_span = (burst[-1].t - burst[0].t) if len(burst) > 1 else 0.0
    nominal = cost["events"] / cost["simulated_s"] * (args.dcs / args.cost_dcs) * args.clock_speed
    per_worker_core = phase.consumed / phase.worker_cpu_s if phase.worker_cpu_s else 0.0
    per_sim_core = cost["events"] / cost["cpu_s"] if cost["cpu_s"] else 0.0
    return {
        "workers": phase.workers,
        "dcs": args.dcs,
        "clock_speed": args.clock_speed,
        "nominal_events_per_s": nominal,
        "published_events_per_s_steady": published_rate,
        "sustained_events_per_s_steady": sustained,
        "burst_events_per_s": (burst[-1].committed - burst[0].committed) / burst_span if burst_span else 0.0,
        "lag_trend_per_min_steady": _trend_per_min(steady),
        "lag_trend_per_min_steady_second_half": _trend_per_min(second_half),
        "lag_max": max((s.lag for s in phase.samples), default=0),
        "caught_up": phase.caught_up,
        "latency_p50_s": _percentile(phase.latencies_s, 0.5) if phase.latencies_s else None,
        "latency_p99_s": _percentile(phase.latencies_s, 0.99) if phase.latencies_s else None,
        "probes": len(phase.latencies_s),
        "probes_not_seen": phase.probes_lost,
        "peak_rss_mb": phase.peak_rss_mb,
        "events_per_worker_cpu_s": per_worker_core,
        "events_per_simulator_cpu_s": per_sim_core,
        "load_mean": statistics.fmean(s.load for s in phase.samples) if phase.samples else 0.0,
        "notes": sorted(set(phase.notes))[:5],
    }


def report(summary: dict[str, Any], out: Any) -> None:
    s = summary
    lat = ("n/a" if s["latency_p50_s"] is None else
           f"p50 {s['latency_p50_s']:.1f} s, p99 {s['latency_p99_s']:.1f} s over {s['probes']} probes"
           f" ({s['probes_not_seen']} not seen in time)")
    clock = "" if s["clock_speed"] == 1 else f" (clock x{s['clock_speed']:g})"
    lines = [
        f"-- {s['workers']} worker(s), {s['dcs']:,} DCs{clock}; mean load average {s['load_mean']:.1f} "
        f"on {os.cpu_count()} cores",
        f"nominal rate of the fleet:            {s['nominal_events_per_s']:>10,.0f} events/s",
        f"published (steady):                   {s['published_events_per_s_steady']:>10,.0f} events/s",
        f"sustained, committed (steady):        {s['sustained_events_per_s_steady']:>10,.0f} events/s",
        f"committed during burst and drain:     {s['burst_events_per_s']:>10,.0f} events/s",
        f"lag trend (steady; its second half):  {s['lag_trend_per_min_steady']:>+10,.0f} "
        f"({s['lag_trend_per_min_steady_second_half']:+,.0f}) events/min; max lag {s['lag_max']:,}; "
        f"{'caught up' if s['caught_up'] else 'NOT caught up'} at the end",
        f"event->queryable latency:             {lat}",
        f"peak RSS per worker:                  {', '.join(f'{m:.0f} MB' for m in s['peak_rss_mb'])}",
        f"events per worker CPU second:         {s['events_per_worker_cpu_s']:>10,.0f}",
        f"events per simulator CPU second:      {s['events_per_simulator_cpu_s']:>10,.0f}",
    ]
    if s["events_per_worker_cpu_s"] and s["events_per_simulator_cpu_s"]:
        for label, rate in (("this fleet's nominal", s["nominal_events_per_s"]),
                            ("the national 25,000/s", NATIONAL_EVENTS_PER_S)):
            lines.append(f"cores {label} rate needs: {rate / s['events_per_worker_cpu_s']:.1f} for workers + "
                         f"{rate / s['events_per_simulator_cpu_s']:.1f} for the simulator (+ broker and store)")
    for note in s["notes"]:
        lines.append(f"note: {note}")
    print("\n".join(lines), file=out, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sim = sub.add_parser("simulate", help="(internal) run the simulated fleet, as a child process")
    sim.add_argument("--bootstrap", required=True)
    sim.add_argument("--prefix", required=True)
    sim.add_argument("--dcs", type=int, required=True)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--seconds", type=float, required=True)
    sim.add_argument("--speed", type=float, default=1.0)
    sim.add_argument("--start-ago", type=float, default=0.0)
    sim.add_argument("--rename")
    sim.add_argument("--spool", required=True)
    sim.add_argument("--result", required=True)
    parser.add_argument("--dcs", type=int, default=10_000, help="simulated DCs of the live fleet")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, in order")
    parser.add_argument("--clock-speed", type=float, default=1.0,
                        help="the live fleet's clock this many times as fast: that many times its events/s")
    parser.add_argument("--steady-s", type=float, default=600.0)
    parser.add_argument("--burst-s", type=float, default=300.0)
    parser.add_argument("--burst-dcs", type=int, default=1250, help="DCs of the reconnecting region")
    parser.add_argument("--burst-span-s", type=float, default=1800.0, help="spooled seconds they drain")
    parser.add_argument("--drain-s", type=float, default=300.0)
    parser.add_argument("--sim-grace-s", type=float, default=60.0,
                        help="seconds a simulator may run past its end before it is sent SIGTERM")
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--probe-s", type=float, default=20.0)
    parser.add_argument("--probe-timeout-s", type=float, default=120.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--broker-heap-mb", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost-dcs", type=int, default=500, help="DCs of the simulator-cost sample")
    parser.add_argument("--cost-s", type=float, default=300.0, help="simulated seconds of the cost sample")
    parser.add_argument("--json", help="also write the summaries to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, out: Any = sys.stdout) -> list[dict[str, Any]]:
    args = parse(argv)
    if args.command == "simulate":
        result = simulate_live(args)
        Path(args.result).write_text(json.dumps(result))
        return [result]
    with tempfile.TemporaryDirectory(prefix="surplus-loadcost-") as tmp:
        cost = simulate_cost(min(args.cost_dcs, args.dcs), args.seed, args.cost_s, Path(tmp) / "spool")
    args.cost_dcs = min(args.cost_dcs, args.dcs)
    print(f"simulator alone: {cost['events']:,} events for {args.cost_dcs:,} DCs over {args.cost_s:g} simulated s "
          f"in {cost['cpu_s']:.1f} CPU s; load {_load():.1f} on {os.cpu_count()} cores", file=out, flush=True)
    summaries = []
    for workers in (int(w) for w in args.workers.split(",")):
        phase = run_phase(workers, args, out)
        summary = summarise(phase, cost, args)
        report(summary, out)
        summaries.append(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2))
    return summaries


if __name__ == "__main__":
    main()
