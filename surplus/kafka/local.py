"""A local single-node Apache Kafka broker (KRaft): process supervision of one JVM. I/O (processes).

`LocalKafka(home).up()` renders the config once, formats storage once, starts `java ...
kafka.Kafka` detached, waits until the broker answers and returns its bootstrap address; `down()`
stops it; `status()` says whether it runs. Used by `surplus kafka`, the demo and the test
fixtures. The other jobs live beside it in surplus/kafka/: the jars and the JVM (jars.py), the
config files (templates.py), the test CA (pki.py), SCRAM users (scram.py), topics (admin.py) and
the client settings (connection.py).

`LocalKafka(home, secure=True)` is the same broker with SASL_SSL (SCRAM-SHA-512) instead of
PLAINTEXT, ACLs, and a throw-away test CA under `home/secure/`; the client settings for its
`admin` user are written to `home/secure/client.env` (KAFKA_* variables).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from surplus.errors import UserError
from surplus.kafka import pki, scram
from surplus.kafka.admin import ensure_topics
from surplus.kafka.connection import KafkaConnection
from surplus.kafka.jars import DEFAULT_JARS, KAFKA_VERSION, REPO_ROOT, ensure_jars, find_java, jvm_argv
from surplus.kafka.ports import HOST, accepts, env_port, last_words, port_in_use
from surplus.kafka.templates import (
    SCRAM_MECHANISM,
    cluster_id,
    java_argfile,
    java_client_properties,
    log4j_properties,
    server_properties,
)
from surplus.paths import make_dir

DEFAULT_HOME = REPO_ROOT / "var" / "kafka"
DEFAULT_PORT = 9092

Progress = Callable[[str], None]

# Brokers this process started: kept so their exit is reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalKafka:
    """One broker+controller JVM whose config, data, logs and pid file live under `home`."""

    def __init__(
        self,
        home: Path,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        heap_mb: int = 512,
        *,
        jars_dir: Path = DEFAULT_JARS,
        progress: Progress = _stderr,
        secure: bool = False,
        mtls_port: int | None = None,
        node_id: int = 1,
        voters: str | None = None,
        replication: int = 1,
        min_insync: int = 1,
    ) -> None:
        self.home = Path(home).resolve()
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.node_id = node_id
        # the KRaft controller quorum, id@host:port,...: this node alone unless in a cluster
        self.voters = voters or f"{node_id}@{HOST}:{self.controller_port}"
        self.replication = replication  # of internal topics and the default of created ones
        self.min_insync = min_insync
        self.heap_mb = heap_mb
        self.jars_dir = Path(jars_dir).resolve()
        self.progress = progress
        self.secure = secure
        self.mtls_port = mtls_port if secure else None  # an extra SSL listener, client certs
        self._log_offset = 0  # where server.log stood when this object last started the broker

    @classmethod
    def from_env(cls, **overrides: Any) -> LocalKafka:
        """The broker named by SURPLUS_KAFKA_HOME, _PORT and _CONTROLLER_PORT (else defaults)."""
        port = env_port("SURPLUS_KAFKA_PORT", DEFAULT_PORT)
        kwargs: dict[str, Any] = {
            "home": Path(os.environ.get("SURPLUS_KAFKA_HOME") or DEFAULT_HOME),
            "port": port,
            "controller_port": env_port("SURPLUS_KAFKA_CONTROLLER_PORT", port + 1),
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # -- paths ---------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def props_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def secure_dir(self) -> Path:
        return self.home / "secure"

    # -- jars and java -------------------------------------------------------------------------

    def java(self) -> str:
        """The java executable ($JAVA_HOME/bin/java, else java on PATH), or a UserError."""
        return find_java()

    def ensure_jars(self) -> Path:
        """Make sure the Kafka jars are in `jars_dir`, resolving them with Maven if not."""
        return ensure_jars(self.jars_dir, self.progress)

    def _jvm(self, java: str, heap_mb: int) -> list[str]:
        return jvm_argv(java, heap_mb, log4j=self.home / "log4j.properties", logs_dir=self.logs_dir,
                        jars_dir=self.jars_dir)

    # -- process state -------------------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            if child.poll() is None:
                return True
            del _CHILDREN[pid]
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        proc = Path(f"/proc/{pid}")
        if not proc.exists():  # not Linux: trust the signal check
            return True
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return False
        # A zombie, or a recycled pid that is not our broker, is not running.
        return state != "Z" and "kafka.Kafka" in cmdline and str(self.props_file) in cmdline

    def _running_pid(self) -> int | None:
        pid = self._read_pid()
        if pid is not None and self._alive(pid):
            return pid
        return None

    def is_running(self) -> bool:
        return self._running_pid() is not None

    def _rendered_port(self) -> int | None:
        try:
            text = self.props_file.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("advertised.listeners="):
                return int(line.split("=", 1)[1].split(",")[0].rsplit(":", 1)[1])
        return None

    def _rendered_voters(self) -> str | None:
        """The controller quorum the data here was last started with (None: never formatted)."""
        if not (self.data_dir / "meta.properties").is_file():
            return None
        try:
            text = self.props_file.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("controller.quorum.voters="):
                return line.split("=", 1)[1].strip()
        return None

    def configured_secure(self) -> bool:
        """Whether the config in HOME is the secure one (what a running broker was started with)."""
        try:
            return "SASL_SSL://" in self.props_file.read_text()
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        pid = self._running_pid()
        port = (self._rendered_port() if pid is not None else None) or self.port
        return {"running": pid is not None, "pid": pid, "bootstrap": f"{HOST}:{port}",
                "home": str(self.home)}

    def _answers(self, timeout_s: float = 2.0) -> bool:
        if not accepts(self.port):
            return False
        try:
            metadata = self.admin().list_topics(timeout=timeout_s)
        except Exception:  # KafkaException while the broker is still coming up
            return False
        return bool(metadata.brokers)

    def admin(self) -> Any:
        """A confluent-kafka AdminClient for this broker (as admin), librdkafka's logging silenced."""
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_config(extra={"log_level": 0}))

    def connection(self, user: str = "admin", password: str | None = None) -> KafkaConnection:
        """How a client reaches this broker (SASL_SSL as `user` when secure)."""
        if not self.secure:
            return KafkaConnection(bootstrap=self.bootstrap)
        if password is None:
            password = self._passwords()[user]
        return KafkaConnection(
            bootstrap=self.bootstrap, security_protocol="SASL_SSL", sasl_mechanism=SCRAM_MECHANISM,
            sasl_username=user, sasl_password=password,
            ssl_cafile=self.secure_dir / "ca.pem")

    def client_config(self, user: str = "admin", password: str | None = None,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings for a client of this broker (SASL_SSL as `user` when secure)."""
        return self.connection(user, password).librdkafka(extra)

    def client_env(self) -> dict[str, str]:
        """The KAFKA_* variables with which agents, workers and `surplus` reach this broker."""
        return self.connection().env()

    # -- up / down -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down on one home across processes (two `surplus kafka up` at once)."""
        make_dir(self.home, "the broker's home")  # never its missing parents
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, timeout_s: float = 90) -> str:
        """Start the broker unless it is already running here; return its bootstrap address."""
        with self._locked():
            pid, started = self.launch()
            self._wait_ready(pid, timeout_s)
            if started is not None:
                self.announce(pid, started)
            return self.bootstrap

    def launch(self) -> tuple[int, float | None]:
        """Start the JVM without waiting for it to answer: (pid, monotonic start time), or
        (pid, None) when it already runs here. The caller holds `_locked()`; a cluster launches
        every node first (a node answers only once a quorum of controllers runs)."""
        pid = self._running_pid()
        if pid is not None:
            running_secure = self.configured_secure()
            if self.secure and not running_secure:
                raise UserError(f"a PLAINTEXT broker already runs in {self.home}: stop it "
                                "(surplus kafka down) before `up --secure`")
            self.secure = running_secure
            self.port = self._rendered_port() or self.port
            return pid, None
        formerly = self._rendered_voters()
        if formerly is not None and formerly.count(",") != self.voters.count(","):
            raise UserError(f"{self.home} holds a node of a {formerly.count(',') + 1}-node quorum "
                            f"({formerly}): start it with its cluster (surplus kafka up --home "
                            f"{self.home.parent})" if formerly.count(",") else
                            f"{self.home} holds a single broker: it cannot join a cluster")
        java = self.java()
        self.ensure_jars()
        for port in (self.port, self.controller_port, *filter(None, [self.mtls_port])):
            if port_in_use(port):
                raise UserError(f"{HOST}:{port} is already in use (another Kafka?); stop it "
                                "or choose other ports with SURPLUS_KAFKA_PORT")
        self._write_config()
        self._format_storage(java)
        started = time.monotonic()
        self.progress(f"starting Apache Kafka {KAFKA_VERSION} (KRaft, node {self.node_id}) on "
                      f"{self.bootstrap} in {self.home} ...")
        return self._spawn(java), started

    def announce(self, pid: int, started: float) -> None:
        self.progress(f"Kafka is up on {self.bootstrap} (pid {pid}, "
                      f"{time.monotonic() - started:.1f} s)")
        if self.secure:
            self.progress(f"secure: SASL_SSL with {SCRAM_MECHANISM} and ACLs; the admin "
                          f"client's settings: set -a; . {self.secure_dir}/client.env")

    def _write_config(self) -> None:
        # the metadata log holds the salted SCRAM credentials and the logs name principals:
        # nothing of the broker's home is readable by other local users
        for directory in (self.home, self.logs_dir, self.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        values: dict[str, Any] = {"port": self.port, "controller_port": self.controller_port,
                                  "data_dir": self.data_dir, "node_id": self.node_id,
                                  "voters": self.voters, "replication": self.replication,
                                  "min_insync": self.min_insync}
        if self.secure:
            passwords = self._passwords()
            pki.ensure_pki(self.secure_dir, passwords["store"], self.java(), self.progress)
            mtls = self.mtls_port
            values.update(
                secure_dir=self.secure_dir, store_password=passwords["store"],
                broker_password=passwords["broker"],
                mtls_listener=f",MTLS://{HOST}:{mtls}" if mtls else "",
                mtls_advertised=f",MTLS://{HOST}:{mtls}" if mtls else "")
        text = server_properties(self.secure, values)
        self.props_file.touch(mode=0o600)
        self.props_file.chmod(0o600)  # the secure config holds the broker's passwords
        self.props_file.write_text(text)
        (self.home / "log4j.properties").write_text(log4j_properties(self.logs_dir))
        if self.secure:
            env = "".join(f"{k}={v}\n" for k, v in self.client_env().items())
            pki.private(self.secure_dir / "client.env", env)
            pki.private(self.secure_dir / "admin.properties", java_client_properties(
                "admin", self._passwords()["admin"], self.secure_dir))

    # -- secure mode: SCRAM passwords, the test CA, client certificates --------------------------

    def _passwords(self) -> dict[str, str]:
        return scram.passwords(self.secure_dir)

    def issue_client_cert(self, name: str, *, server: bool = False) -> tuple[Path, Path]:
        """(certificate, key) PEM files signed by the test CA with CN=`name` (its principal)."""
        return pki.issue_cert(self.secure_dir, name, server=server)

    def add_scram_user(self, name: str, password: str, timeout_s: float = 30) -> None:
        """Create or update a SCRAM-SHA-512 user through the Admin API (as admin)."""
        scram.add_user(self.admin(), name, password, timeout_s)

    def _format_storage(self, java: str) -> None:
        marker = self.secure_dir / "scram-users-formatted"
        if (self.data_dir / "meta.properties").is_file():
            if self.secure and not marker.is_file():
                raise UserError(f"{self.data_dir} was formatted without --secure (no SCRAM users): "
                                "use another --home, or delete it to start afresh")
            return
        id_file = self.home / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(cluster_id() + "\n")
        cluster = id_file.read_text().strip()
        self.progress(f"formatting Kafka storage in {self.data_dir} (cluster {cluster}) ...")
        tool = ["kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self.props_file)]
        if self.secure:
            # `--add-scram` carries the broker's and admin's passwords: they go in a Java argument
            # file (mode 0600, removed after), so that no process's argv holds them
            argfile = self.secure_dir / "storage-format.args"
            pki.private(argfile, java_argfile([*tool, *scram.format_arguments(self.secure_dir)]))
            tool = [f"@{argfile}"]
        try:
            done = subprocess.run([*self._jvm(java, 256), *tool], capture_output=True, text=True,
                                  check=False)
        finally:
            if self.secure:
                (self.secure_dir / "storage-format.args").unlink(missing_ok=True)
        if done.returncode != 0:
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit {done.returncode}"
            raise UserError(f"could not format Kafka storage in {self.data_dir}: {reason}")
        if self.secure:
            marker.write_text("SCRAM-SHA-512 users broker and admin\n")

    def _spawn(self, java: str) -> int:
        server_log = self.logs_dir / "server.log"
        self._log_offset = server_log.stat().st_size if server_log.is_file() else 0
        with open(self.logs_dir / "kafka.out", "wb") as out:
            child = subprocess.Popen(
                [*self._jvm(java, self.heap_mb), "kafka.Kafka", str(self.props_file)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.home, start_new_session=True,
            )
        _CHILDREN[child.pid] = child
        self.pid_file.write_text(f"{child.pid}\n")
        return child.pid

    def _wait_ready(self, pid: int, timeout_s: float) -> None:
        self.wait_ready(pid, time.monotonic() + timeout_s)

    def wait_ready(self, pid: int, deadline: float) -> None:
        """Until the broker answers on its port (UserError if it exits or the deadline passes)."""
        while True:
            if not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise UserError(f"the Kafka broker exited during start-up: {self._last_words()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise UserError(f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} "
                                f"in time; see {self.logs_dir}/server.log")
            time.sleep(0.2)

    def _last_words(self) -> str:
        return last_words(self.logs_dir, self._log_offset)

    def down(self, timeout_s: float = 30) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after `timeout_s`. False if it was not running."""
        with self._locked():
            pid = self.terminate()
            if pid is None:
                return False
            self.wait_stopped(pid, time.monotonic() + timeout_s)
            return True

    def terminate(self) -> int | None:
        """Send SIGTERM to the running broker; its pid, or None (pid file removed) if none runs."""
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, deadline: float) -> None:
        """Until `pid` has exited; SIGKILL once `deadline` (monotonic) has passed."""
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    # -- topics --------------------------------------------------------------------------------

    def create_topics(self, names: Iterable[str], partitions: int | None = None,
                      timeout_s: float = 30) -> None:
        """Create topics that do not exist yet and wait until every partition has a leader."""
        from surplus.kafka.admin import PARTITIONS

        ensure_topics(self.connection(), names, partitions=partitions or PARTITIONS, timeout_s=timeout_s)
