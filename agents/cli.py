"""`surplus agent` (and `python -m agents`): run the data-center agent until SIGTERM. Wiring.

Reads the settings (TOML + environment), builds the collectors, spool and producer, registers,
then publishes on the configured cadences. SIGTERM or SIGINT stops collecting, flushes for up to
`--flush-timeout` seconds and closes the spool (what is not delivered stays there for next time).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from agents.clock import Clock, SimClock, SystemClock
from agents.confighelp import help_epilog
from agents.records import from_ms, to_ms
from agents.settings import AgentSettings, load_settings
from agents.watch import Status
from surplus.errors import UserError

if TYPE_CHECKING:
    from agents.run import Agent

log = logging.getLogger("agents")


def _clock(settings: AgentSettings, speed: float | None) -> Clock:
    """The system clock, or a simulated one when the simulator is accelerated or shifted.

    A simulated clock resumes after the last event time the agent saved in its spool directory,
    so a restarted simulation never reuses an event time (and an event id) of the previous run.
    """
    sim = settings.collectors.simulator
    speed = speed if speed is not None else sim.speed
    if not sim.enabled or (speed == 1.0 and sim.start_offset_s == 0):
        return SystemClock()
    start = datetime.now(UTC) + timedelta(seconds=sim.start_offset_s)
    try:
        saved = from_ms(int((settings.spool.path / "agent-clock").read_text().strip()))
        start = max(start, saved + timedelta(seconds=1))
    except (OSError, ValueError):
        pass
    return SimClock(start, speed)


def _summary(settings: AgentSettings) -> str:
    k, s = settings.kafka, settings.spool
    return (f"dc {settings.dc.dc_id} ({settings.dc.province}, hub {settings.dc.hub}); collectors "
            f"{', '.join(settings.collectors.enabled())}; kafka {k.bootstrap} prefix "
            f"{k.topic_prefix!r} {k.security_protocol}; spool {s.path} (max {s.max_bytes} bytes, "
            f"fsync {s.fsync}); signing {'on' if settings.signing_key_file else 'off'}")


@click.group(name="agent", epilog=help_epilog(), invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SURPLUS_AGENT_CONFIG", help="TOML config file (see below).")
@click.option("--run-for", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds of event time (default: run until SIGTERM).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Simulated seconds per real second (simulator only).")
@click.option("--flush-timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="On stop, wait this long for deliveries; the rest stays in the spool.")
@click.option("--check", is_flag=True, help="Validate the config, print a summary and exit.")
@click.pass_context
def agent(ctx: click.Context, config: Path | None, run_for: float | None, speed: float | None,
          flush_timeout: float, check: bool) -> None:
    """Run the data-center agent: collectors -> disk spool -> Kafka.

    Publishes a cpn.dc.v1 registration at start and daily, then capacity, power, job and
    heartbeat events on their cadences (SPEC §3). Every event is on disk before Kafka sees it
    and leaves the spool only when the broker acknowledged it; after an outage or a restart the
    spool is replayed in order, with the same event ids. SIGTERM stops it cleanly.

    `surplus agent tally` prints the operator's own hourly tally of the job metering the broker acknowledged.

    It logs one line when the broker goes away and one when it is back, a status line every
    status_interval_s and when an outage's backlog is delivered, and serves Prometheus
    /metrics on SURPLUS_METRICS_PORT when that is set. `surplus agent status` prints the
    spool's figures from another shell.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    settings = load_settings(config)
    if check:
        click.echo(f"config ok: {_summary(settings)}")
        return
    from surplus.logs import configure

    configure(settings.log_level, kafka=settings.kafka.bootstrap)
    from agents.run import Agent

    clock = _clock(settings, speed)
    runner = Agent.from_settings(settings, clock=clock)
    stop_metrics = _metrics(runner, settings.metrics_port)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("agent %s starting: %s; spool backlog %d events", __import__("agents").__version__,
             _summary(settings), runner.outbox.backlog)
    try:
        if run_for is not None:
            runner.run_for(run_for, stop)
        else:
            runner.run(stop)
    finally:
        done = runner.close(flush_timeout)
        if stop_metrics is not None:
            stop_metrics()
        counts = runner.outbox.counts
        log.info("stopped: %d spooled, %d delivered, %d left in the spool%s", counts.spooled,
                 counts.delivered, runner.outbox.backlog, "" if done else " (flush timed out)")


def _moment(text: str, end: bool) -> datetime:
    """A UTC date (a whole day; `end` means the end of that day) or an RFC 3339 time."""
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time") from None
    if t.tzinfo is None:
        raise UserError(f"{text!r} has no zone: add Z or +08:00")
    return t.astimezone(UTC)


@agent.command("tally")
@click.option("--from", "start", required=True, help="first UTC day (YYYY-MM-DD) or RFC 3339 time")
@click.option("--to", "end", required=True, help="last UTC day, inclusive, or an RFC 3339 time (exclusive)")
@click.option("--spool", "spool_dir", type=click.Path(path_type=Path, file_okay=False),
              help="the agent's spool directory (default: the config's spool.path)")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SURPLUS_AGENT_CONFIG", help="the agent's TOML config, for its spool path")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="write here, not stdout")
def tally(start: str, end: str, spool_dir: Path | None, config: Path | None, fmt: str,
          out: Path | None) -> None:
    """Print the operator's own tally: per DC, UTC hour and job, the ledger entries and the
    device-seconds and energy (kWh) that the job events this agent delivered add up to, rounded as
    the platform's statements round them. Compare it with a statement file:
    `surplus ledger verify FILE --tally TALLY`."""
    from agents.tally import FILE_NAME, Tally, render

    lo, hi = _moment(start, end=False), _moment(end, end=True)
    if hi <= lo:
        raise UserError("--to must be after --from")
    directory = spool_dir or load_settings(config).spool.path
    path = directory / FILE_NAME
    if not path.exists():
        raise UserError(f"no tally at {path}: has an agent with this spool sent job events?")
    book = Tally(path)
    try:
        text = render(book.between(lo, hi), fmt)
    finally:
        book.close()
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def _metrics(runner: Agent, port: int | None) -> Callable[[], None] | None:
    """Serve /metrics on `port` (refreshed at each pass of the loop); the stop function, or None."""
    if port is None:
        return None
    from agents.metrics import AgentMetrics, serve

    metrics = AgentMetrics(runner.outbox, [runner.counts])
    try:
        stop = serve(metrics, port)
    except OSError as exc:
        raise UserError(f"cannot serve /metrics on port {port}: {exc.strerror or exc}") from None
    hooks = runner.reporter_hooks
    hooks.append(lambda: metrics.refresh(to_ms(runner.clock.now())))
    log.info("serving Prometheus /metrics on port %d", port)
    return stop


@agent.command(name="status")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SURPLUS_AGENT_CONFIG", help="The agent's TOML config (for its spool path).")
@click.option("--spool", "spool", type=click.Path(path_type=Path, file_okay=False),
              help="The spool directory (default: the config's spool.path).")
@click.pass_context
def status(ctx: click.Context, config: Path | None, spool: Path | None) -> None:
    """Print the spool's status line: spooled, delivered, backlog, oldest unsent age, broker.

    Reads the spool directory without taking it from a running agent: the backlog and the
    oldest unsent event come from the spool files, the counters and the broker's state from
    the status the agent last wrote there (every status_interval_s and at stop).
    """
    import time

    from agents.spool import peek_spool
    from agents.watch import read_status_file

    if spool is None:
        config = config or ctx.obj
        if config is None:
            from agents.settings import SpoolSettings

            spool = SpoolSettings().path
        else:
            spool = load_settings(config).spool.path
    if not spool.is_dir():
        raise UserError(f"no spool at {spool}: has the agent run with this config?")
    backlog, oldest_ms, nbytes = peek_spool(spool)
    now_ms = int(time.time() * 1000)
    age = 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
    last = read_status_file(spool)
    if last is None:
        click.echo(f"status: backlog {backlog} events, oldest unsent {age:.1f} s, {nbytes} bytes "
                   f"in {spool} (no status written by an agent yet)")
        return
    line = Status(last.spooled, last.delivered, backlog, round(age, 1), last.broker).line()
    ago = max(0.0, (now_ms - last.written_at_ms) / 1000)
    click.echo(f"status: {line} ({nbytes} bytes in {spool}; counters of agent pid {last.pid}, "
               f"written {ago:.0f} s ago)")


def main(argv: list[str] | None = None) -> int:
    """`python -m agents`: the agent command with one-line errors, never a traceback."""
    try:
        agent.main(args=argv, prog_name="python -m agents", standalone_mode=False)
    except UserError as exc:
        click.echo(f"surplus agent: error: {exc}", err=True)
        return exc.exit_code
    except click.UsageError as exc:
        from surplus.cli import usage_line

        click.echo(usage_line(exc, "python -m agents"), err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"surplus agent: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    return 0
