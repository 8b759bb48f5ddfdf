"""`surplus kafka up|down|status|sign-csr`: the local broker's and cluster's commands (wiring only;
I/O in local.py and cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from surplus.errors import EXIT_FOUND, UserError
from surplus.kafka.cluster import LocalKafkaCluster, is_cluster_home
from surplus.kafka.local import DEFAULT_HOME, DEFAULT_PORT, LocalKafka

HOME_OPTION = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), envvar="SURPLUS_KAFKA_HOME",
    default=DEFAULT_HOME, show_default="var/kafka in the repository",
    help="Directory holding the broker's config, data, logs and pid file "
         "[env SURPLUS_KAFKA_HOME].")


def _say(message: str) -> None:
    click.echo(message, err=True)


def _broker(home: Path, port: int = DEFAULT_PORT, controller_port: int | None = None,
            **kwargs: Any) -> LocalKafka:
    return LocalKafka(home, port, controller_port, progress=_say, **kwargs)


@click.group()
def kafka() -> None:
    """The local Apache Kafka broker (KRaft on 127.0.0.1: one node, or a cluster with --brokers).

    The broker runs from Apache Kafka's Maven Central jars (fetched once with mvn into
    var/cache/kafka-jars) and needs Java 17. With a real cluster, set KAFKA_BOOTSTRAP instead.
    """


def _cluster(home: Path, **kwargs: Any) -> LocalKafkaCluster | None:
    """The cluster recorded in HOME, or None when HOME holds one broker (or nothing)."""
    return LocalKafkaCluster.at(home, progress=_say, **kwargs) if is_cluster_home(home) else None


@kafka.command()
@HOME_OPTION
@click.option("--port", type=click.IntRange(1, 65535), envvar="SURPLUS_KAFKA_PORT",
              default=DEFAULT_PORT, show_default=True,
              help="Client port on 127.0.0.1: PLAINTEXT, or SASL_SSL with --secure "
                   "[env SURPLUS_KAFKA_PORT].")
@click.option("--controller-port", type=click.IntRange(1, 65535),
              envvar="SURPLUS_KAFKA_CONTROLLER_PORT",
              help="KRaft controller port [env SURPLUS_KAFKA_CONTROLLER_PORT; default: port + 1].")
@click.option("--heap-mb", type=click.IntRange(128), default=512, show_default=True,
              help="Broker JVM heap size in MiB.")
@click.option("--timeout-s", type=click.FloatRange(1), default=90.0, show_default=True,
              help="Seconds to wait for the broker to answer.")
@click.option("--secure", is_flag=True,
              help="SASL_SSL (SCRAM-SHA-512) instead of PLAINTEXT, with ACLs and a test CA in "
                   "HOME/secure; the admin client's KAFKA_* settings go to HOME/secure/client.env.")
@click.option("--mtls-port", type=click.IntRange(1, 65535),
              help="With --secure: also an SSL listener that requires client certificates.")
@click.option("--brokers", type=click.IntRange(1, 9),
              help="Nodes [default: 1, or as many as HOME's cluster has] (each a broker and a KRaft "
                   "controller): node i listens on PORT+i and "
                   "CONTROLLER_PORT+i (default CONTROLLER_PORT: PORT+BROKERS); with 3, topics get "
                   "3 replicas and min.insync.replicas=2. Data under HOME/node-<i>.")
def up(home: Path, port: int, controller_port: int | None, heap_mb: int,
       timeout_s: float, secure: bool, mtls_port: int | None, brokers: int | None) -> None:
    """Start the local broker (or cluster), or do nothing if it already runs in HOME.

    Progress goes to stderr; the last line on stdout is the bootstrap address
    (e.g. 127.0.0.1:9092, or every node's for a cluster: 127.0.0.1:9092,127.0.0.1:9093,...),
    so `export KAFKA_BOOTSTRAP=$(surplus kafka up)` works.
    """
    if mtls_port is not None and not secure:
        raise click.UsageError("--mtls-port needs --secure")
    if (brokers or 1) > 1 or is_cluster_home(home):
        if secure:
            raise click.UsageError("--secure runs one broker: leave out --brokers")
        if brokers is None:
            brokers = LocalKafkaCluster.at(home, progress=_say).brokers
        cluster = LocalKafkaCluster(home, brokers, port, controller_port, heap_mb, progress=_say)
        was_running = cluster.is_running()
        address = cluster.up(timeout_s=max(timeout_s, 120.0))
        if was_running:
            _say(f"the Kafka cluster is already running on {address}")
        click.echo(address)
        return
    broker = _broker(home, port, controller_port, heap_mb=heap_mb, secure=secure,
                     mtls_port=mtls_port)
    was_running = broker.is_running()
    address = broker.up(timeout_s=timeout_s)
    if was_running:
        _say(f"Kafka is already running on {address} (pid {broker.status()['pid']})")
    click.echo(address)


@kafka.command()
@HOME_OPTION
@click.option("--timeout-s", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
def down(home: Path, timeout_s: float) -> None:
    """Stop the local broker (every node of a cluster); its data is kept for the next `up`.

    Sends SIGTERM, then SIGKILL after --timeout-s. Exits 0 whether or not it was running.
    """
    cluster = _cluster(home)
    if cluster is not None:
        pids = [n["pid"] for n in cluster.status() if n["running"]]
        stopped = cluster.down(timeout_s=timeout_s)
        if stopped:
            click.echo(f"stopped {stopped} of {cluster.brokers} brokers (pids {', '.join(map(str, pids))})")
        else:
            click.echo(f"not running (home {cluster.home})")
        return
    broker = _broker(home)
    pid = broker.status()["pid"]
    if broker.down(timeout_s=timeout_s):
        click.echo(f"stopped (pid {pid})")
    else:
        click.echo(f"not running (home {broker.home})")


@kafka.command()
@HOME_OPTION
def status(home: Path) -> None:
    """Say whether the local broker runs, with its pid and address (a line per node of a cluster).

    Exits 0 when it is running (every node of a cluster), 1 when it is not (the line says how
    many nodes of a cluster run).
    """
    cluster = _cluster(home)
    if cluster is not None:
        nodes = cluster.status()
        for n in nodes:
            running = f"running  pid {n['pid']}" if n["running"] else "not running"
            click.echo(f"node {n['node_id']}  {running}  {n['bootstrap']}  home {n['home']}")
        up_count = sum(n["running"] for n in nodes)
        click.echo(f"{up_count} of {len(nodes)} brokers running; bootstrap {cluster.bootstrap}")
        if up_count < len(nodes):
            sys.exit(EXIT_FOUND)
        return
    broker = _broker(home)
    state = broker.status()
    if state["running"]:
        mode = "  SASL_SSL" if broker.configured_secure() else ""
        click.echo(f"running  pid {state['pid']}  {state['bootstrap']}{mode}  home {state['home']}")
        return
    click.echo(f"not running  home {state['home']}")
    sys.exit(EXIT_FOUND)


@kafka.command("sign-csr")
@HOME_OPTION
@click.argument("csr", type=click.File("rb"))
@click.option("--name", required=True, help="The DC id (Kafka principal) the certificate is for.")
def sign_csr(home: Path, csr: Any, name: str) -> None:
    """Sign a DC's own CSR with the secure local broker's test CA; print the certificate's path.

    The subject must be exactly CN=<name> or O=<plain name>,CN=<name>: a second CN, a CN inside
    another attribute, escaped characters, a multi-valued RDN or an empty CN is refused (exit 2),
    so the certificate maps to that DC's principal and no other (deploy/kafka/acls.md).
    """
    from surplus.kafka import pki

    broker = _broker(home)
    if not (broker.secure_dir / "ca.pem").is_file():
        raise UserError(f"no test CA in {broker.secure_dir}: run `surplus kafka up --secure` first")
    click.echo(pki.sign_csr(broker.secure_dir, csr.read(), name))
