"""The `surplus` console script: one click group whose subcommands load lazily (wiring only).

Subcommands live in their own modules and are imported only when used, so `surplus agent` works
with just the `agent` extra installed and `--help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from surplus.errors import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, UserError, service_error

# name -> "module:attribute" of a click.Command or click.Group
COMMANDS: dict[str, tuple[str, str]] = {
    "api": ("surplus.dispatch.api:api", "The dispatcher's HTTP API: offers, surplus now, OpenAPI."),
    "agent": ("agents.cli:agent", "Run the data-center agent (collectors, publisher, disk spool)."),
    "alerts": ("streams.alerts.cli:alerts", "The alert evaluator (run) and webhook delivery (check, test, resend)."),
    "db": ("surplus.db:db", "ClickHouse store: apply migrations."),
    "demo": ("surplus.demo:demo", "The national network on one machine, ending with a report."),
    "forecast": ("surplus.dispatch.cli:forecast", "Forecast idle devices per pool and hour; backtest it."),
    "grafana": ("surplus.grafana:grafana", "Publish datasource, dashboards and alerts to Grafana."),
    "kafka": ("surplus.kafka.cli:kafka", "The local Apache Kafka broker (KRaft) for machines without a cluster."),
    "ledger": ("streams.ledger_cli:ledger", "The ledger: reconcile, signed hourly statements, verify, invoices."),
    "place": ("surplus.dispatch.cli:place", "The dispatcher's question: ranked offers of sellable capacity."),
    "report": ("surplus.report:report", "National, hub and DC surplus, green share and top tenants."),
    "sql": ("surplus.sql:sql", "An analyst's SQL on the store (read-only): table, CSV, TSV or JSON lines."),
    "store": ("surplus.chserver.cli:store", "The embedded store served over ClickHouse's HTTP interface."),
    "streams": ("streams.cli:streams", "Stream workers: validate, normalise and aggregate into ClickHouse."),
}


# what each exit status means, per command (the README's "Exit status" table says the same)
EXIT_DEFAULT = "0 done; 2 bad input, or a store or service missing or not answering; 130 interrupted."
EXIT_CODES: dict[str, str] = {
    "streams worker": "0 stopped by SIGTERM/SIGINT; 2 bad input, or Kafka or ClickHouse missing or not "
                      "answering at start; 3 stopped by the dead-letter guard, without committing.",
    "agent": "0 stopped by SIGTERM/SIGINT (the spool keeps what is unsent); 2 bad input or config; "
             "130 interrupted.",
    "ledger reconcile": "0 no differences; 1 differences found (listed); 2 bad input, or the store "
                        "missing or not answering.",
    "ledger verify": "0 every statement verifies (and the tally, if given, matches); 1 a statement "
                     "fails or an hour differs from the tally; 2 bad input or an unreadable file.",
    "ledger invoice": "0 written; 1 the invoice total differs from cpn.tenant_usage_daily; 2 bad "
                      "input, or the store missing or not answering.",
    "alerts resend": "0 all resent; 1 notifications still undelivered; 2 bad input, or the store "
                     "missing or not answering.",
    "kafka status": "0 the local broker is running; 1 it is not; 2 bad input.",
    "report": "0 printed; 2 bad input, no data yet, or the store missing or not answering.",
}


def exit_status(path: str) -> str:
    """The --help epilog of the command `path` ("ledger reconcile"): what its exit statuses mean."""
    return "Exit status: " + EXIT_CODES.get(path, EXIT_DEFAULT)


def _with_exit_status(command: click.Command, path: str) -> click.Command:
    epilog = command.epilog or ""
    if "Exit status:" not in epilog:
        command.epilog = f"{epilog}\n\n{exit_status(path)}" if epilog else exit_status(path)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            _with_exit_status(sub, f"{path} {name}")
    return command


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, help_text = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            return _unavailable(cmd_name, help_text, f"needs the Python module {missing!r}; "
                                "install the matching extra (pip install 'surplus[streams]')")
        command: click.Command = getattr(module, attr)
        return _with_exit_status(command, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str, why: str) -> click.Command:
    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: Any) -> None:
        raise UserError(f"surplus {name}: {why}")

    return stub


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="surplus")
def cli() -> None:
    """Surplus: telemetry and accounting for a national computing-power network.

    Configuration comes from the environment (KAFKA_BOOTSTRAP, CLICKHOUSE_URL,
    SURPLUS_TOPIC_PREFIX, ...) and optional TOML files; see each command's --help.
    """


def usage_line(exc: click.UsageError, program: str) -> str:
    """click's usage error (three lines and a blank one) as one line that names the --help to read."""
    path = exc.ctx.command_path if exc.ctx is not None else program
    return f"{path}: error: {exc.format_message().rstrip('.')} (see {path} --help)"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a UserError, or a service's error nobody handled (ClickHouse, Kafka, a refused
    connection), becomes one line on stderr and its exit status (EXIT_CODES), never a traceback
    (which goes to the log at DEBUG)."""
    from surplus.logs import configure

    configure(os.environ.get("SURPLUS_LOG_LEVEL") or "warning")  # commands that log set their own
    try:
        cli.main(args=argv, prog_name="surplus", standalone_mode=False)
    except UserError as exc:
        click.echo(f"surplus: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("surplus: aborted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as exc:
        click.echo(usage_line(exc, "surplus"), err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"surplus: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("surplus: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        line = service_error(exc)
        if line is None:
            raise
        logging.getLogger("surplus").debug("the error in full", exc_info=True)
        click.echo(f"surplus: error: {line}", err=True)
        return EXIT_UNAVAILABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
