"""A local Apache Kafka cluster of N KRaft nodes from the same jars: supervision of N JVMs. I/O (processes).

`LocalKafkaCluster(home, brokers=3).up()` starts N nodes (`surplus.kafka.local.LocalKafka`), each
a broker and a voter of one controller quorum, under `home/node-<id>/`, with one cluster id;
internal topics and created topics get `min(N, 3)` replicas and `min.insync.replicas` one fewer
(3 nodes: RF 3, min ISR 2, so one node can fail without stopping acks=all writes or losing an
acknowledged one). Every node is launched before any is waited for: a node answers only once a
quorum of controllers runs. `down()` stops all of them at once, `status()` reports each, and
`bootstrap` names every node. The layout (node count and ports) is kept in `home/cluster.json`,
so `surplus kafka down`/`status` need only the home.

Ports: node i (0-based) serves clients on `port + i` and its controller on
`controller_port + i` (default `controller_port = port + N`): 9092-9094 and 9095-9097 for three.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from surplus.errors import UserError
from surplus.kafka.admin import PARTITIONS, ensure_topics
from surplus.kafka.connection import KafkaConnection
from surplus.kafka.jars import DEFAULT_JARS
from surplus.kafka.local import LocalKafka, Progress, _stderr
from surplus.kafka.ports import HOST
from surplus.kafka.templates import cluster_id

LAYOUT = "cluster.json"


def is_cluster_home(home: Path) -> bool:
    """Whether `home` holds a cluster made by LocalKafkaCluster (rather than one broker)."""
    return (Path(home) / LAYOUT).is_file()


class LocalKafkaCluster:
    """N broker+controller JVMs under `home` (see the module doc). UserError on a bad layout."""

    def __init__(
        self,
        home: Path,
        brokers: int = 3,
        port: int = 9092,
        controller_port: int | None = None,
        heap_mb: int = 512,
        *,
        ports: list[int] | None = None,
        controller_ports: list[int] | None = None,
        jars_dir: Path = DEFAULT_JARS,
        progress: Progress = _stderr,
    ) -> None:
        if brokers < 1:
            raise UserError("a cluster needs at least one broker")
        self.home = Path(home).resolve()
        if (self.home / "server.properties").is_file():
            raise UserError(f"{self.home} holds a single broker (surplus kafka up without --brokers): "
                            "stop it and choose another --home for a cluster")
        layout = self._layout()
        if layout is not None and layout["brokers"] != brokers:
            raise UserError(f"{self.home} holds a {layout['brokers']}-broker cluster: use --brokers "
                            f"{layout['brokers']}, or another --home")
        if ports is None:
            ports = [port + i for i in range(brokers)]
        if controller_ports is None:
            first = controller_port if controller_port is not None else port + brokers
            controller_ports = [first + i for i in range(brokers)]
        if layout is not None and self._any_running(layout):
            ports, controller_ports = layout["ports"], layout["controller_ports"]  # as it runs
        if len(ports) != brokers or len(controller_ports) != brokers:
            raise UserError(f"{brokers} brokers need {brokers} client and controller ports")
        if len(set(ports) | set(controller_ports)) != 2 * brokers:
            raise UserError(f"the client ports {ports} and controller ports {controller_ports} overlap")
        self.brokers = brokers
        self.ports = list(ports)
        self.controller_ports = list(controller_ports)
        self.replication = min(brokers, 3)
        self.min_insync = max(1, self.replication - 1)
        self.progress = progress
        voters = ",".join(f"{i + 1}@{HOST}:{p}" for i, p in enumerate(self.controller_ports))
        self.nodes = [
            LocalKafka(self.home / f"node-{i + 1}", port=p, controller_port=c, heap_mb=heap_mb,
                       jars_dir=jars_dir, progress=progress, node_id=i + 1, voters=voters,
                       replication=self.replication, min_insync=self.min_insync)
            for i, (p, c) in enumerate(zip(self.ports, self.controller_ports, strict=True))
        ]

    @classmethod
    def at(cls, home: Path, **kwargs: Any) -> LocalKafkaCluster:
        """The cluster recorded in `home` (its node count and ports); UserError if none is."""
        layout = cls._read_layout(Path(home))
        if layout is None:
            raise UserError(f"no cluster in {home} (no {LAYOUT})")
        return cls(home, layout["brokers"], ports=layout["ports"],
                   controller_ports=layout["controller_ports"], **kwargs)

    # -- layout ----------------------------------------------------------------------------------

    @staticmethod
    def _read_layout(home: Path) -> dict[str, Any] | None:
        try:
            layout: dict[str, Any] = json.loads((home / LAYOUT).read_text())
        except (OSError, ValueError):
            return None
        return layout

    def _layout(self) -> dict[str, Any] | None:
        return self._read_layout(self.home)

    def _any_running(self, layout: dict[str, Any]) -> bool:
        return any(LocalKafka(self.home / f"node-{i + 1}", port=p, progress=lambda _m: None).is_running()
                   for i, p in enumerate(layout["ports"]))

    def _write_layout(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / LAYOUT).write_text(json.dumps(
            {"brokers": self.brokers, "ports": self.ports, "controller_ports": self.controller_ports},
            indent=2) + "\n")

    # -- addresses -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated (a client needs only one to answer)."""
        return ",".join(node.bootstrap for node in self.nodes)

    def connection(self) -> KafkaConnection:
        return KafkaConnection(bootstrap=self.bootstrap)

    def client_env(self) -> dict[str, str]:
        """The KAFKA_* variables with which agents, workers and `surplus` reach this cluster."""
        return self.connection().env()

    def node(self, node_id: int) -> LocalKafka:
        """Node `node_id` (1-based, as in its `node.id`)."""
        return self.nodes[node_id - 1]

    # -- up / down / status ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_running(self) -> bool:
        """Whether every node runs."""
        return all(node.is_running() for node in self.nodes)

    def up(self, timeout_s: float = 120) -> str:
        """Start every node that is not running; return the bootstrap of all of them once each
        answers and the cluster's metadata lists every broker (UserError otherwise)."""
        with self._locked():
            self._write_layout()
            id_file = self.home / "cluster.id"
            if not id_file.is_file():
                id_file.write_text(cluster_id() + "\n")
            cluster = id_file.read_text()
            launched: list[tuple[LocalKafka, int, float | None]] = []
            with contextlib.ExitStack() as locks:
                for node in self.nodes:
                    locks.enter_context(node._locked())
                    node_id_file = node.home / "cluster.id"
                    if not node_id_file.is_file():
                        node_id_file.write_text(cluster)  # one cluster id for every node's storage
                    pid, started = node.launch()
                    launched.append((node, pid, started))
                deadline = time.monotonic() + timeout_s
                for node, pid, started in launched:
                    node.wait_ready(pid, deadline)
                    if started is not None:
                        node.announce(pid, started)
            self._wait_for_brokers(deadline)
            return self.bootstrap

    def _wait_for_brokers(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.connection().librdkafka({"log_level": 0}))
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(admin.list_topics(timeout=5).brokers)
            except Exception:  # KafkaException while a node is still joining
                seen = 0
            if seen == self.brokers:
                self.progress(f"Kafka cluster of {self.brokers} brokers is up on {self.bootstrap} "
                              f"(replication factor {self.replication}, "
                              f"min.insync.replicas {self.min_insync})")
                return
            time.sleep(0.2)
        raise UserError(f"only {seen} of {self.brokers} brokers joined the cluster in time; see "
                        f"{self.home}/node-*/logs/server.log")

    def down(self, timeout_s: float = 30) -> int:
        """Stop every node at once (SIGTERM, then SIGKILL after `timeout_s`); how many ran."""
        with self._locked(), contextlib.ExitStack() as locks:
            for node in self.nodes:
                locks.enter_context(node._locked())
            pids = [(node, node.terminate()) for node in self.nodes]
            deadline = time.monotonic() + timeout_s
            stopped = 0
            for node, pid in pids:
                if pid is not None:
                    node.wait_stopped(pid, deadline)
                    stopped += 1
            return stopped

    def status(self) -> list[dict[str, Any]]:
        """Each node's status (running, pid, bootstrap, home), with its node id."""
        return [{"node_id": node.node_id, **node.status()} for node in self.nodes]

    # -- topics ----------------------------------------------------------------------------------

    def create_topics(self, names: Iterable[str], partitions: int | None = None,
                      timeout_s: float = 30) -> None:
        """Create topics that do not exist yet (with the cluster's replication) and wait for leaders."""
        ensure_topics(self.connection(), names, partitions=partitions or PARTITIONS,
                      replication=self.replication, timeout_s=timeout_s)
