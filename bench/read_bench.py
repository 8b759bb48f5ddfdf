"""The SPEC §5 relations at national scale: cost follows the question, not the history. Benchmark (I/O).

Builds a synthetic national history in chDB, written into the worker's tables with the worker's
columns (capacity samples with their resolved peaks, power samples, registrations), so every
materialized view runs as it does for the worker: `--pools` pools (10 per DC) sampled every
15 s, power per DC every 60 s, some pools going silent (stale), for each history size in
`--days`. Then, as in production, the roll-up settles the past and a live batch arrives through
the worker's sink. For the README's queries and each §5 relation it asks a "last hour" and a
"last 30 days" question and prints the time (best of `--repeat`) and the rows read, per history
size, and the growth ratio (largest / smallest history; SPEC §5: at most 1.5 for "last hour"
with four times the history). Last, the insert cost per capacity sample through the sink with
every materialized view, against the same insert into a bare table of the same columns.
Machines are noisy: compare the ratios, not the times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOUR = "now() - INTERVAL 1 HOUR"
MONTH = "now() - INTERVAL 30 DAY"
SURPLUS = ("national_surplus_minute", "hub_surplus_minute", "dc_surplus_minute")
HOURLY = ("national_surplus_hourly", "hub_surplus_hourly", "dc_surplus_hourly")
GREEN = ("national_green_hourly", "hub_green_hourly", "dc_green_hourly")
HUBS = ("jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx")
PEAKS = (989.4, 66.9, 33.5)  # nvidia-h100-sxm5-80gb, dense FP16 / FP32 / FP64 TFLOPS


def questions() -> list[tuple[str, str, str]]:
    """(name, range, SQL with {db}): the README's queries, the latest minute, each relation twice."""
    out = [
        ("README: national last hour", "1h",
         "SELECT ts, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64, pools_reporting, pools_stale "
         f"FROM {{db}}.national_surplus_minute WHERE ts >= {HOUR} ORDER BY ts"),
        ("README: green by hub today", "today",
         "SELECT hub, sum(green_kwh) / sum(facility_kwh) AS green_share, sum(facility_kwh) / sum(it_kwh) AS pue "
         "FROM {db}.hub_green_hourly WHERE hour >= today() GROUP BY hub ORDER BY green_share"),
        ("latest national minute (last hour)", "latest",
         f"SELECT * FROM {{db}}.national_surplus_minute WHERE ts >= {HOUR} ORDER BY ts DESC LIMIT 1"),
        ("latest national minute (no filter)", "latest",
         "SELECT * FROM {db}.national_surplus_minute ORDER BY ts DESC LIMIT 1"),
    ]
    for name in SURPLUS:
        out.append((name, "1h", f"SELECT * FROM {{db}}.{name} WHERE ts >= {HOUR}"))
        out.append((name, "30d", f"SELECT count(), sum(idle_pflops_fp16), sum(pools_stale) FROM {{db}}.{name} "
                                 f"WHERE ts >= {MONTH}"))
    for name in HOURLY:
        out.append((name, "1h", f"SELECT * FROM {{db}}.{name} WHERE hour >= toStartOfHour({HOUR})"))
        out.append((name, "30d", f"SELECT * FROM {{db}}.{name} WHERE hour >= {MONTH}"))
    for name in GREEN:
        out.append((name, "1h", f"SELECT * FROM {{db}}.{name} WHERE hour >= toStartOfHour({HOUR})"))
        out.append((name, "30d", f"SELECT * FROM {{db}}.{name} WHERE hour >= {MONTH}"))
    return out


def build(client: Any, db: str, *, pools: int, days: float, end: datetime) -> tuple[int, float]:
    """Write the history ending at `end`, six hours at a time in large columnar blocks (INSERT …
    SELECT, so every materialized view fires as for the worker's inserts), with a roll-up after
    each (as the worker's timer settles hours in production); returns (samples, roll-up seconds)."""
    from surplus.rollup import rollup
    from surplus.store import migrate

    migrate(client, db, retention_days=35)
    dcs = max(1, pools // 10)
    steps = int(days * 86400 // 15)
    n = steps * pools
    end_ms = int(end.timestamp() * 1000)
    regs = ", ".join(
        f"('dc-{d:05d}', 'reg-{d}', now64(3) - INTERVAL 5 DAY, 'DC {d}', 'op', 'CN-GZ', "
        f"'{HUBS[d % len(HUBS)] if d % 17 else 'none'}', NULL, 30, 100, 100, now64(3))"
        for d in range(dcs))
    client.command(f"INSERT INTO {db}.registrations (dc_id, event_id, time, name, operator, province, hub, "
                   f"cluster, lat, lon, racks_total, received_at) VALUES {regs}")
    # one block per 15 s step of every pool, as the worker's batches arrive: time-ordered
    block = 1 << 20
    settings = {"max_block_size": block, "max_insert_block_size": block, "min_insert_block_size_rows": block,
                "min_insert_block_size_bytes": 0}
    chunk = 1440  # six hours of 15 s steps
    rolled_s = 0.0
    for first in range(0, steps, chunk):
        count = min(chunk, steps - first)
        started = time.perf_counter()
        client.command(
            f"INSERT INTO {db}.capacity_samples (dc_id, pool_id, event_id, time, interval_s, device_model, "
            "devices_total, devices_online, devices_allocated, busy_ratio, peak_tflops_fp16, peak_tflops_fp32, "
            "peak_tflops_fp64, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64, online_pflops_fp16, "
            "online_pflops_fp32, online_pflops_fp64, received_at) "
            "SELECT dc, pool, id, t, 15, 'nvidia-h100-sxm5-80gb', 512, online, allocated, 0.5, "
            f"{PEAKS[0]}, {PEAKS[1]}, {PEAKS[2]}, "
            # the worker's figures (schemas/metrics.py): (online - allocated) * peak / 1000, online * peak / 1000
            f"(online - allocated) * {PEAKS[0]} / 1000, (online - allocated) * {PEAKS[1]} / 1000, "
            f"(online - allocated) * {PEAKS[2]} / 1000, online * {PEAKS[0]} / 1000, online * {PEAKS[1]} / 1000, "
            f"online * {PEAKS[2]} / 1000, t "
            "FROM (SELECT concat('dc-', leftPad(toString(intDiv(p, 10)), 5, '0')) AS dc, "
            "concat('p', toString(p % 10)) AS pool, concat('cap-', toString(p), '-', toString(k)) AS id, t, "
            "toUInt32(480 + p % 32) AS online, toUInt32((cityHash64(p, intDiv(k, 40)) % 480)) AS allocated, k, p "
            f"FROM (SELECT intDiv(number, {pools}) AS k, number % {pools} AS p, "
            f"fromUnixTimestamp64Milli(toInt64({end_ms} - ({steps} - intDiv(number, {pools})) * 15000), 'UTC') AS t "
            f"FROM numbers({first * pools}, {count * pools}))) "
            # every 50th pool goes silent two hours before the end: stale for the recent minutes
            f"WHERE NOT (p % 50 = 0 AND k > {steps - 480})",
            settings=settings,
        )
        written = time.perf_counter()
        rollup(client, db, margin_s=0)
        rolled_s += time.perf_counter() - written
        print(f"  {db}: steps {first + count}/{steps}: insert {written - started:.1f} s, "
              f"roll-up {time.perf_counter() - written:.1f} s", file=sys.stderr, flush=True)
    power_steps = int(days * 1440)
    client.command(
        f"INSERT INTO {db}.power_samples (dc_id, event_id, time, interval_s, it_energy_kwh, facility_energy_kwh, "
        "grid_kwh, green_contract_kwh, onsite_renewable_kwh, grid_renewable_share, grid_emission_g_per_kwh, "
        "green_energy_kwh, carbon_emission_kg, received_at) "
        "SELECT concat('dc-', leftPad(toString(d), 5, '0')), concat('pow-', toString(d), '-', toString(k)), t, 60, "
        "100, 130, 80, 30, 20, 0.3, 550, 30 + 20 + 80 * 0.3, 80 * 550 / 1000, t "
        f"FROM (SELECT intDiv(number, {dcs}) AS k, number % {dcs} AS d, "
        f"fromUnixTimestamp64Milli(toInt64({end_ms} - ({power_steps} - intDiv(number, {dcs})) * 60000), 'UTC') AS t "
        f"FROM numbers({power_steps * dcs}))",
        settings=settings,
    )
    return n, rolled_s


def settle(client: Any, timeout_s: float = 300) -> None:
    """Wait until background merges are done (measure queries, not merges)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and client.query("SELECT count() FROM system.merges").result_rows[0][0]:
        time.sleep(1)


def capacity_row(dc: str, pool: str, event_id: str, t: datetime, online: int, allocated: int,
                 received_ms: int) -> tuple[Any, ...]:
    """One capacity_samples row in schemas.registry.CAPACITY_COLUMNS order, the PFLOPS as the
    worker computes them (schemas.metrics.pflops)."""
    from schemas.metrics import pflops

    idle = online - allocated
    return (dc, pool, event_id, t, 15, "nvidia-h100-sxm5-80gb", 512, online, allocated, 0.5, *PEAKS,
            *(pflops(idle, p) for p in PEAKS), *(pflops(online, p) for p in PEAKS), received_ms)


def live_batch(client: Any, db: str, *, pools: int, at: datetime) -> None:
    """One 15 s batch of every pool, through the worker's sink (the current hour stays unsettled)."""
    from streams.sink import Sink

    received = int(at.timestamp() * 1000)
    rows = [capacity_row(f"dc-{p // 10:05d}", f"p{p % 10}", f"live-{p}", at, 480 + p % 32, p % 480, received)
            for p in range(pools) if p % 50]
    Sink(client, db).write({"capacity_samples": rows})


def ask(client: Any, db: str, sql: str, repeat: int) -> tuple[float, int, int]:
    """Best time (s) of `repeat` runs, rows read from storage and bytes returned.

    On chDB the engine's own counters (rows read from tables, wall time in the engine); on a
    server the query summary."""
    best, read, size = float("inf"), 0, 0
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    for _ in range(repeat):
        if handle is not None:
            with handle.lock:
                result = handle.conn.query(sql.replace("{db}", db), "CSV")
            elapsed, rows, nbytes = result.elapsed(), int(result.storage_rows_read()), len(result.bytes())
        else:
            started = time.perf_counter()
            answer = client.query(sql.replace("{db}", db))
            elapsed, rows = time.perf_counter() - started, int(answer.summary.get("read_rows", 0))
            nbytes = len(answer.result_rows)
        if elapsed < best:
            best, read, size = elapsed, rows, nbytes
    return best, read, size


def insert_cost(client: Any, db: str, *, batches: int, batch: int, at: datetime) -> tuple[float, float]:
    """µs per capacity sample through the sink: into capacity_samples (every MV) and into a bare copy."""
    from schemas.registry import CAPACITY_COLUMNS
    from streams.sink import Sink

    client.command(f"CREATE TABLE IF NOT EXISTS {db}.capacity_bare AS {db}.capacity_samples")
    sink = Sink(client, db)
    received = int(at.timestamp() * 1000)

    def rows(i: int) -> list[tuple[Any, ...]]:
        t = at + timedelta(seconds=15 * (i // 2000))
        return [capacity_row(f"dc-{j % 2000 // 10:05d}", f"p{j % 10}", f"ins-{i}-{j}",
                             t + timedelta(seconds=15 * (j // 2000)), 500, j % 480, received) for j in range(batch)]

    prepared = [rows(i * batch) for i in range(batches)]
    costs = {}
    for table in ("capacity_bare", "capacity_samples"):
        started = time.perf_counter()
        for chunk in prepared:
            if table == "capacity_samples":
                sink.write({"capacity_samples": chunk})
            else:
                sink._insert_columns(table, CAPACITY_COLUMNS, [list(c) for c in zip(*chunk, strict=True)])
        costs[table] = (time.perf_counter() - started) / (batches * batch) * 1e6
    return costs["capacity_samples"], costs["capacity_bare"]


def storage(client: Any, db: str) -> dict[str, int]:
    rows = client.query(f"SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' AND active "
                        "GROUP BY table").result_rows
    return {t: int(b) for t, b in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=2000, help="pools (10 per DC; default 2000)")
    parser.add_argument("--days", type=float, nargs="+", default=[1.0, 4.0], help="history sizes in days")
    parser.add_argument("--repeat", type=int, default=5, help="runs per question (best is kept)")
    parser.add_argument("--quick", action="store_true", help="200 pools, 0.25 and 1 day (for the test suite)")
    parser.add_argument("--path", help="chDB store directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pools, args.days, args.repeat = 200, [0.25, 1.0], 2
    from surplus.rollup import rollup
    from surplus.store import connect

    with tempfile.TemporaryDirectory(prefix="surplus-read-bench-", ignore_cleanup_errors=True) as tmp:
        client, _ = connect(f"chdb://{args.path or tmp}")
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=15)
        dbs: dict[float, str] = {}
        for days in args.days:
            db = f"bench_{str(days).replace('.', '_')}"
            client.command(f"DROP DATABASE IF EXISTS {db}")
            started = time.perf_counter()
            n, rolled_s = build(client, db, pools=args.pools, days=days, end=end)
            built = time.perf_counter() - started - rolled_s
            live_batch(client, db, pools=args.pools, at=end + timedelta(seconds=15))
            started = time.perf_counter()
            live_rollup = rollup(client, db, margin_s=0)
            live_s = time.perf_counter() - started
            live_batch(client, db, pools=args.pools, at=end + timedelta(seconds=16))  # unsettled again
            settle(client)
            sizes = storage(client, db)
            print(f"history {days:g} d: {n:,} capacity samples of {args.pools} pools in {built:.0f} s "
                  f"({n / built:,.0f} samples/s with every MV); roll-ups every 6 h of it: {rolled_s:.1f} s in all, "
                  f"live roll-up of {live_rollup.hours} h in {live_s:.2f} s; "
                  f"raw {sizes.get('capacity_samples', 0) / n:.1f} B/sample, "
                  f"minute state {sizes.get('pool_minutes', 0) / n:.1f} B/sample", flush=True)
            dbs[days] = db
        # each question of every history in turn, `repeat` rounds: a shared machine's load falls
        # on both sizes alike; the best time of each is kept
        results: dict[float, dict[tuple[str, str], tuple[float, int, int]]] = {d: {} for d in dbs}
        for _ in range(args.repeat):
            for name, rng, sql in questions():
                for days, db in dbs.items():
                    got = ask(client, db, sql, 1)
                    best = results[days].get((name, rng))
                    if best is None or got[0] < best[0]:
                        results[days][(name, rng)] = got
        small, large = min(args.days), max(args.days)
        growth = large / small
        print(f"\n| question | range | {small:g} d: s | rows read | {large:g} d: s | rows read | time ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        worst_hour = 0.0
        for name, rng, _ in questions():
            a, b = results[small][(name, rng)], results[large][(name, rng)]
            ratio = b[0] / a[0] if a[0] > 0 else float("nan")
            if rng == "1h" and not name.startswith("README"):
                worst_hour = max(worst_hour, ratio)
            print(f"| {name} | {rng} | {a[0]:.3f} | {a[1]:,} | {b[0]:.3f} | {b[1]:,} | {ratio:.2f} |")
        latest = results[large][("latest national minute (last hour)", "latest")][0]
        unbounded = results[large][("latest national minute (no filter)", "latest")][0]
        print(f"\nworst 'last hour' growth ratio over {growth:g}x the history: {worst_hour:.2f} (SPEC §5: <= 1.5)")
        print(f"latest national minute at {args.pools} pools x {large:g} d: {latest:.3f} s with a ts filter, "
              f"{unbounded:.3f} s without (goal: < 1 s)")
        with_mv, bare = insert_cost(client, f"bench_{str(small).replace('.', '_')}",
                                    batches=5 if args.quick else 20, batch=20_000, at=end + timedelta(days=1))
        print(f"insert per capacity sample through the sink: {with_mv:.2f} µs with every MV, {bare:.2f} µs into "
              f"a bare table of the same columns (ratio {with_mv / bare:.2f}); "
              f"a national network's 6,700 samples/s need {6700 * with_mv / 1e6:.2f} s of insert per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
