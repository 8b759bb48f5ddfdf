"""`surplus demo`: the national network on one machine — broker, store, simulated fleet, worker,
live progress, and the surplus report at the end. Wiring.

Event time runs `--speed` times faster than the clock and ends at the present (events more than
300 s ahead of the receiver's clock would be rejected as `future_time`): `--minutes 2 --speed 120`
simulates the four hours before now in two minutes. Every run starts from a clean
`var/demo/` (store, spool, logs); the embedded broker it starts is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from surplus.errors import UserError
from surplus.logs import configure
from surplus.paths import REPO, make_dir, var_dir
from surplus.store import redact

GROUP = "surplus-demo"


@dataclass
class Progress:
    """What the live display shows; written by the fleet thread, read by the main thread."""

    sim_now: datetime | None = None
    history: int = 0  # delivered by the history backfill
    live: int = 0  # delivered by the simulated agents
    injected: int = 0  # the bad messages sent on purpose, delivered
    processed: int = 0  # committed by the worker's group
    end: int = 0  # in Kafka: the end offsets of the telemetry topics
    dead: int = 0
    dark_dc: str | None = None
    phase: str = "starting"
    errors: list[str] = field(default_factory=list)

    @property
    def published(self) -> int:
        """Every event the demo had acknowledged by Kafka: history, live and the bad ones."""
        return self.history + self.live + self.injected

    def counters(self) -> list[tuple[str, str]]:
        """The rows that account for every event: published = in Kafka = processed + lag."""
        rows = [("events published", f"{self.published:,} ({self.history:,} history, {self.live:,} live, "
                                     f"{self.injected} bad on purpose)"),
                ("events processed", f"{self.processed:,} of the {self.end:,} in Kafka"),
                ("consumer lag", f"{max(0, self.end - self.processed):,}")]
        if self.end > self.published and self.phase in ("worker catching up", "done"):
            # an agent re-sent what had timed out: Kafka holds it twice
            rows.append(("re-sent", f"{self.end - self.published:,} delivered twice after a timeout "
                                    "(the store keeps them once)"))
        return rows


def _bad_messages(prefix: str, dc_id: str, now: datetime) -> list[tuple[str, bytes, bytes]]:
    """A few messages that must end in the dead letters, one per kind of mistake."""
    def event(**data_changes: Any) -> bytes:
        body: dict[str, Any] = {
            "specversion": "1.0", "id": f"demo-bad-{len(data_changes)}-{sorted(data_changes)}",
            "source": f"//cpn/dc/{dc_id}", "type": "cpn.capacity.v1",
            "time": now.isoformat().replace("+00:00", "Z"), "datacontenttype": "application/json",
            "data": {"dc_id": dc_id, "pool_id": "demo-bad", "device_model": "nvidia-h100-sxm5-80gb",
                     "devices_total": 8, "devices_online": 8, "devices_allocated": 4, "interval_s": 60}}
        body["data"].update(data_changes)
        return json.dumps(body).encode()

    topic = prefix + "capacity"
    key = dc_id.encode()
    return [
        (topic, key, b"{ this is not JSON"),
        (topic, key, event(devices_allocated=99)),  # inconsistent
        (topic, key, event(device_model="acme-mystery-1")),  # unknown_device_model
        (topic, key, event(busy_ratio=7)),  # schema
        (topic, key, json.dumps({"type": "cpn.rumour.v1"}).encode()),  # unknown_type
    ]


def _signing_keys(dc_ids: list[str], registry: Path) -> dict[str, Any]:
    """A fresh HMAC-SHA256 key per DC, and the registry the worker verifies against (mode 0600)."""
    import secrets

    from schemas.signing import SigningKey

    keys = {dc: SigningKey(f"{dc}-demo", dc, "hmac-sha256", secrets.token_bytes(32)) for dc in dc_ids}
    text = "".join(f'[[key]]\nkey_id = "{k.key_id}"\ndc_id = "{dc}"\nalg = "hmac-sha256"\n'
                   f'secret = "{k.secret.hex()}"\n\n' for dc, k in keys.items())
    registry.touch(mode=0o600)
    registry.write_text(text)
    return keys


def _offsets(consumer: Any, prefix: str) -> tuple[int, int, int]:
    """(committed by the demo's group, end of the telemetry topics, dead letters), read through
    one idle consumer of the demo's group (it never subscribes, so it never joins the group)."""
    from confluent_kafka import KafkaException, TopicPartition

    topics = consumer.list_topics(timeout=5).topics
    tele = [TopicPartition(prefix + t, p) for t in ("registry", "capacity", "power", "jobs", "heartbeat")
            if prefix + t in topics for p in topics[prefix + t].partitions]
    dead = [TopicPartition(prefix + "deadletter", p) for p in topics[prefix + "deadletter"].partitions] \
        if prefix + "deadletter" in topics else []
    try:
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(tele, timeout=5))
    except KafkaException:
        committed = 0
    end = sum(consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in tele)
    dead_n = sum(consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in dead)
    return committed, end, dead_n


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([sys.executable, "-m", "surplus.cli", "streams", "worker", "--loglevel", "info"],
                                cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        handle.close()


def _serve_store(url: str, log: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """`surplus store serve` on the demo's store: (process, the writer's URL it prints last)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "SURPLUS_TOPIC_PREFIX")}
    with open(log, "ab") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "surplus.cli", "store", "serve", "--url", url,
                                 "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=handle, text=True, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http://"):
            return proc, line.strip()
    proc.wait()
    raise UserError(f"surplus store serve exited ({proc.returncode}); see {log}")


def _stop(proc: subprocess.Popen[Any] | None, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL after the deadline (a stuck worker can ignore SIGTERM)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _render(p: Progress, started: float, minutes: float) -> Any:
    from rich.table import Table

    table = Table(title="Surplus demo — national computing-power network", show_header=False, min_width=64)
    table.add_column(style="bold")
    table.add_column()
    elapsed = time.monotonic() - started
    table.add_row("phase", p.phase)
    table.add_row("simulated time", p.sim_now.strftime("%Y-%m-%d %H:%M UTC") if p.sim_now else "—")
    table.add_row("elapsed", f"{elapsed:,.0f} s of ~{minutes * 60:,.0f} s")
    for name, value in p.counters():
        table.add_row(name, value)
    table.add_row("dead letters", f"{p.dead:,}")
    table.add_row("dark DC", p.dark_dc or "—")
    for error in p.errors[-3:]:
        table.add_row("[red]error", error)
    return table


def _line(p: Progress, started: float, minutes: float) -> str:
    """The live table as one plain line, for a console that is not a terminal."""
    sim = p.sim_now.strftime("%Y-%m-%d %H:%M UTC") if p.sim_now else "—"
    line = (f"surplus demo: {p.phase}; simulated {sim}; {time.monotonic() - started:,.0f} s of "
            f"~{minutes * 60:,.0f} s; published {p.published:,} ({p.history:,} history, {p.live:,} live, "
            f"{p.injected} bad on purpose), processed {p.processed:,} of the {p.end:,} in Kafka, "
            f"lag {max(0, p.end - p.processed):,}, dead letters {p.dead:,}")
    return line + (f"; dark DC {p.dark_dc}" if p.dark_dc else "")


def _backfill(console: Any, sim: Any, kafka: Any, workdir: Path, signer: Any, days: float, span: timedelta) -> int:
    """Days of past telemetry before the live part, through an outbox of its own (agents.backfill)."""
    from agents.backfill import backfill
    from agents.settings import SpoolSettings
    from agents.wiring import build_outbox

    end = datetime.now(UTC).replace(second=0, microsecond=0) - span
    console.print(f"backfilling {days:g} days of history (capacity every 30 min, power hourly) ...")
    # history can be simulated again: no fsync for its spool
    outbox = build_outbox(kafka, SpoolSettings(path=workdir / "history-spool", fsync="never"),
                          client_id="surplus-history", signer=signer)
    try:
        backfill(sim, outbox, end - timedelta(days=days), end,
                 progress=lambda t, n: console.print(f"  history to {t:%Y-%m-%d %H:%M}: {n:,} events",
                                                     end="\r" if console.is_terminal else "\n"))
    finally:
        outbox.close(60)
    console.print(f"  {outbox.counts.delivered:,} past events published")
    return outbox.counts.delivered


def _metering(client: Any, database: str, since: datetime, sim: Any) -> dict[str, Any]:
    """Allocated against metered accelerator device-hours of the live part (surplus.demo_metering)."""
    from schemas.catalogue import load_catalogue
    from surplus.demo_metering import metering, simulated_share

    accelerators = {m for m, d in load_catalogue().devices.items() if d.kind == "accelerator"}
    pools = [(p.device_model, p.devices, p.metered_share) for d in sim for p in d.sim.pools]
    try:
        return metering(client, database, since, accelerators, simulated_share(pools, accelerators))
    except Exception as exc:  # the report stands; the comparison's failure is one line
        return {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}


SAMPLE_ARGS = "--devices 64 --hours 8 --origin CN-SH --min-green-share 0.6"


def _sample_request(client: Any, database: str) -> dict[str, Any]:
    """Refresh the forecast, then ask the sample question (SPEC §8); the answer as JSON."""
    from schemas.prices import PriceBook
    from surplus.dispatch.model import Request
    from surplus.dispatch.service import answer, refresh

    refresh(client, database)
    request = Request(devices=64, hours=8, origin="CN-SH", min_green_share=0.6)
    return answer(client, database, request, PriceBook.load()).model_dump(mode="json")


def run_demo(*, dcs: int, minutes: float, speed: float, seed: int, workdir: Path,
             bootstrap: str | None, clickhouse_url: str | None, prefix: str, quiet: bool = False,
             backfill_days: float = 0) -> dict[str, Any]:
    """Run the whole demo; return the final report (also rendered unless quiet)."""
    from rich.console import Console

    from agents.clock import SimClock
    from agents.fleet import national_fleet
    from agents.publisher import fleet_signer
    from agents.run import Fleet
    from agents.settings import Intervals, KafkaSettings, SpoolSettings
    from schemas.signing import sign
    from surplus.kafka.admin import PARTITIONS, client_config, ensure_topics
    from surplus.kafka.connection import from_env
    from surplus.kafka.local import LocalKafka
    from surplus.kafka.ports import free_port

    console = Console(stderr=quiet)
    if dcs < 1 or minutes <= 0 or speed <= 0:
        raise UserError("--dcs, --minutes and --speed must be positive")
    if workdir.exists():
        shutil.rmtree(workdir)
    make_dir(workdir, "the demo's working directory")
    # librdkafka's, the agents' and the clients' log lines go to a file: the terminal holds the table
    configure("info", file=workdir / "demo.log", kafka=bootstrap)
    store = clickhouse_url or f"chdb://{workdir / 'chdb'}"
    url = store
    broker: LocalKafka | None = None
    worker: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[str] | None = None
    fleet: Any = None
    watcher: Any = None
    try:
        if bootstrap is None:
            console.print("[bold]starting the local Kafka broker[/] (Apache Kafka 3.9.2, KRaft) ...")
            broker = LocalKafka(workdir / "kafka", port=free_port(), controller_port=free_port(),
                                progress=lambda m: console.print(f"  {m}"))
            broker.up()
            kafka = broker.connection()
        else:
            kafka = from_env(bootstrap=bootstrap)
        ensure_topics(kafka, [prefix + t for t in ("registry", "capacity", "power", "jobs", "heartbeat",
                                                     "deadletter")])
        if store.startswith("chdb://"):  # served, so the worker, the report and analysts share it
            console.print(f"serving the store over ClickHouse's HTTP interface (log: {workdir / 'store.log'}) ...")
            server, url = _serve_store(store, workdir / "store.log", free_port())
        env = {**os.environ, **kafka.env(), "CLICKHOUSE_URL": url, "SURPLUS_TOPIC_PREFIX": prefix,
               "SURPLUS_GROUP_ID": GROUP, "SURPLUS_SESSION_TIMEOUT_S": "6", "SURPLUS_METRICS_INTERVAL_S": "5",
               "SURPLUS_DATA_DIR": str(workdir / "faust"), "SURPLUS_PARTITIONS": str(PARTITIONS)}
        env["SURPLUS_SIGNING_KEYS"] = str(workdir / "signing-keys.toml")
        # a simulated fleet runs its clock faster than real time; on a loaded machine it falls behind
        # and sends future-dated events (future_time) in bulk, which is the simulator's artefact, not
        # a bad roll-out: the dead-letter guard stays off for the demo unless asked for
        env.setdefault("SURPLUS_DEADLETTER_LIMIT", "1")
        console.print(f"starting a stream worker (log: {workdir / 'worker.log'}) ...")

        span = timedelta(seconds=minutes * 60 * speed)
        sim = national_fleet(dcs, seed=seed)
        keys = _signing_keys([d.dc.dc_id for d in sim], workdir / "signing-keys.toml")
        settings = KafkaSettings(**dict(kafka), topic_prefix=prefix)
        worker = _start_worker(env, workdir / "worker.log")  # after the key registry exists
        history = 0
        if backfill_days > 0:
            history = _backfill(console, sim, settings, workdir, fleet_signer(keys), backfill_days, span)
        now = datetime.now(UTC).replace(microsecond=0)
        clock = SimClock(now - span, speed=speed, not_after_now=True)  # never future-dated events
        fleet = Fleet.simulated(sim, kafka=settings, spool=SpoolSettings(path=workdir / "spool"), clock=clock,
                                intervals=Intervals(capacity_s=60, power_s=300, heartbeat_s=60),
                                signer=fleet_signer(keys))
        progress = Progress(phase="simulating", history=history)
        stop = threading.Event()

        def drive() -> None:
            try:
                fleet.run_for(span.total_seconds() / 2, stop)
                victim = fleet.agents.pop(len(fleet.agents) // 2)  # one DC goes dark midway
                progress.dark_dc = victim.dc.dc_id
                from confluent_kafka import Producer

                producer = Producer(client_config(kafka))

                def acked(err: Any, _msg: Any) -> None:
                    progress.injected += err is None

                honest = fleet.agents[0].dc.dc_id
                for topic, key, value in _bad_messages(prefix, honest, clock.now()):
                    producer.produce(topic, value, key=key, headers=[sign(value, keys[honest])], on_delivery=acked)
                # and a spoof: another DC's telemetry signed with this DC's key
                spoof = fleet.agents[1].dc.dc_id
                value = _bad_messages(prefix, spoof, clock.now())[1][2].replace(b": 99", b": 1")
                producer.produce(prefix + "capacity", value, key=spoof.encode(), headers=[sign(value, keys[honest])],
                                 on_delivery=acked)
                producer.flush(10)
                # the rest of the span, to its fixed end: a slow first half or a slow flush above
                # shortens the second half instead of running the clock past the present
                fleet.run_for((clock.start + span - clock.now()).total_seconds() - 1, stop)
            except Exception as exc:  # shown, then the demo ends with what it has
                progress.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                stop.set()

        from confluent_kafka import Consumer

        watcher = Consumer(client_config(kafka, {"group.id": GROUP, "enable.auto.commit": False}))
        started = time.monotonic()
        thread = threading.Thread(target=drive, name="fleet", daemon=True)
        thread.start()
        from surplus.demo_display import progress_display

        with progress_display(console, lambda: _render(progress, started, minutes),
                              lambda: _line(progress, started, minutes), transient=quiet) as live:
            while thread.is_alive() or progress.phase != "done":
                progress.sim_now = clock.now() if thread.is_alive() else progress.sim_now
                progress.live = fleet.outbox.counts.delivered
                try:
                    progress.processed, progress.end, progress.dead = _offsets(watcher, prefix)
                except Exception as exc:
                    progress.errors.append(f"offsets: {exc}")
                if worker.poll() is not None:
                    raise UserError(f"the stream worker exited ({worker.returncode}); see {workdir / 'worker.log'}")
                if not thread.is_alive():
                    if progress.phase == "simulating":
                        progress.phase = "flushing the agents' spool"
                        fleet.close(timeout_s=60)
                        progress.live = fleet.outbox.counts.delivered
                        progress.phase = "worker catching up"
                        catch_up_deadline = time.monotonic() + 120
                    elif progress.end and progress.processed >= progress.end:
                        progress.phase = "done"
                    elif time.monotonic() > catch_up_deadline:
                        raise UserError(f"the worker did not catch up in 120 s; see {workdir / 'worker.log'}")
                live.update(_render(progress, started, minutes))
                time.sleep(0.5)
        _stop(worker)
        worker = None
        from surplus.report import build_report, render_report
        from surplus.store import connect

        client, target = connect(url)
        report: dict[str, Any] = dict(build_report(client, target.database))
        report["demo"] = {"published": progress.published, "published_history": progress.history,
                          "published_live": progress.live, "published_bad": progress.injected,
                          "in_kafka": progress.end, "processed": progress.processed,
                          "dead_letters": progress.dead, "dark_dc": progress.dark_dc, "dcs": dcs,
                          "speed": speed, "store": store, "served": redact(url) if server else None,
                          "prefix": prefix}
        report["demo"]["metering"] = _metering(client, target.database, clock.start, sim)
        try:
            report["dispatch"] = _sample_request(client, target.database)
        except Exception as exc:  # the report stands; the question's failure is one line
            report["dispatch"] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
        if not quiet:
            render_report(report, console)
            if "error" not in report["demo"]["metering"]:
                from surplus.demo_metering import explain

                console.print(explain(report["demo"]["metering"]), highlight=False)
            from surplus.dispatch.cli import render_answer
            from surplus.dispatch.model import Answer

            console.print("\n[bold]The dispatcher's question[/]:")
            console.print(f"  surplus place {SAMPLE_ARGS}", soft_wrap=True, markup=False,
                          highlight=False)
            if "error" in report["dispatch"]:
                console.print(f"[red]could not answer it: {report['dispatch']['error']}")
            else:
                render_answer(Answer.model_validate(report["dispatch"]), console)
            from surplus.demo_display import print_advice

            print_advice(console, _afterwards(store, target.database, served=server is not None))
        return report
    finally:
        if watcher is not None:
            watcher.close()
        _stop(worker)
        _stop(server, timeout_s=60)
        if fleet is not None:
            with contextlib.suppress(Exception):  # already closed, or the broker is gone
                fleet.close(timeout_s=5)
        if broker is not None:
            broker.down()


def _afterwards(store: str, database: str, *, served: bool) -> list[tuple[str, str]]:
    """What to do with the store after the demo, as ("text" | "command", line) pairs: each
    command on a line of its own, to be printed whole (surplus.demo_display.print_advice)."""
    if not served:
        return [("text", f"\nThe data is in [bold]{redact(store)}[/] (database {database}). "
                         "Report on it again:"),
                ("command", f".venv/bin/surplus report --url '{redact(store)}'"),
                ("text", "SQL on it as an analyst:"),
                ("command", f".venv/bin/surplus sql --url '{redact(store)}'")]
    url = f"http://analyst:<password>@127.0.0.1:8123/{database}"
    return [
        ("text", f"\nThe data is in [bold]{store}[/] (database {database}); the next demo run "
                 "starts afresh."),
        ("text", "Keep the store served (workers, reports, Grafana and analysts all at once); it "
                 "listens on 127.0.0.1:8123 and prints the writer's URL for workers last:"),
        ("command", f"SURPLUS_ANALYST_PASSWORD=<choose one> .venv/bin/surplus store serve "
                    f"--url '{store}'"),
        ("text", "Grafana's ClickHouse datasource: protocol HTTP, server 127.0.0.1, port 8123, "
                 f"user analyst, the password you chose, default database {database}."),
        ("text", f"An analyst's client (clickhouse-connect; DBeaver/JDBC "
                 f"jdbc:clickhouse://127.0.0.1:8123/{database}) connects to:"),
        ("command", url),
        ("text", "e.g."),
        ("command", f"SELECT * FROM {database}.national_surplus_minute ORDER BY ts DESC LIMIT 5"),
        ("text", "Report through it:"),
        ("command", f"CLICKHOUSE_URL={url} .venv/bin/surplus report"),
        ("text", "SQL through it (read-only, table/csv/tsv/jsonl):"),
        ("command", f"CLICKHOUSE_URL={url} .venv/bin/surplus sql"),
    ]


@click.command()
@click.option("--dcs", default=48, show_default=True, help="simulated data centers (over the 8 hubs)")
@click.option("--minutes", default=2.0, show_default=True, help="real minutes the simulation runs")
@click.option("--speed", default=120.0, show_default=True,
              help="event time runs this many times faster than the clock (120: 4 h in 2 min)")
@click.option("--seed", default=7, show_default=True, help="seed of the simulated fleet")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="where the demo keeps its store, spool and logs (default var/demo; wiped at start)")
@click.option("--backfill-days", type=click.FloatRange(0, 60), default=21, show_default=True,
              help="days of past telemetry published first, so the forecast has history (0: none)")
@click.option("--json", "as_json", is_flag=True, help="print the final report as JSON instead")
def demo(dcs: int, minutes: float, speed: float, seed: int, workdir: Path | None, backfill_days: float,
         as_json: bool) -> None:
    """The national network on one machine.

    Starts the local Kafka broker (or uses KAFKA_BOOTSTRAP), the chDB store under var/demo/chdb
    served by `surplus store serve` (or CLICKHOUSE_URL's server), a stream worker writing through
    it, and simulated agents for a national fleet: the DCs in turn over the 8 hubs, most at the
    hubs' 10 clusters, the others elsewhere in a hub's provinces (none outside the hubs), mixed
    NVIDIA/Ascend/Hygon/Cambricon/CPU pools, diurnal load,
    jobs from several tenants, each DC's energy mix from its province, one DC that goes dark
    midway and a few bad messages. First it publishes --backfill-days of past telemetry, so the
    forecast of idle devices has history. Shows live progress and ends with the national surplus
    report and one dispatcher's request with its offers (surplus place); everything it started is
    stopped. Each run starts from a clean var/demo/.
    """
    report = run_demo(dcs=dcs, minutes=minutes, speed=speed, seed=seed,
                      workdir=workdir or var_dir() / "demo", bootstrap=os.environ.get("KAFKA_BOOTSTRAP"),
                      clickhouse_url=os.environ.get("CLICKHOUSE_URL"),
                      prefix=os.environ.get("SURPLUS_TOPIC_PREFIX", "cpn."), quiet=as_json,
                      backfill_days=backfill_days)
    if as_json:
        click.echo(json.dumps(report, default=str))
