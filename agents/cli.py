"""`surplus agent` (and `python -m agents`): run the data-center agent until SIGTERM. Wiring.

Reads the settings (TOML + environment), builds the collectors, spool and producer, registers,
then publishes on the configured cadences. SIGTERM or SIGINT stops collecting, flushes for up to
`--flush-timeout` seconds and closes the spool (what is not delivered stays there for next time).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import click

from agents.clock import Clock, SimClock, SystemClock
from agents.confighelp import help_epilog
from agents.records import from_ms
from agents.settings import AgentSettings, load_settings
from surplus.errors import UserError

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

    `surplus agent tally` prints the operator's own hourly tally of the job metering it sent.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(config)
    if check:
        click.echo(f"config ok: {_summary(settings)}")
        return
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("agents.librdkafka").setLevel(logging.WARNING)
    from agents.run import Agent

    clock = _clock(settings, speed)
    runner = Agent.from_settings(settings, clock=clock)
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
    device-seconds and energy (kWh) that the job events this agent sent add up to, rounded as
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


def main(argv: list[str] | None = None) -> int:
    """`python -m agents`: the agent command with one-line errors, never a traceback."""
    try:
        agent.main(args=argv, prog_name="python -m agents", standalone_mode=False)
    except UserError as exc:
        click.echo(f"surplus agent: error: {exc}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    return 0
