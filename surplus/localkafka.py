"""A local single-node Apache Kafka broker (KRaft) run from Maven jars: I/O side (processes, files).

`LocalKafka(home).up()` formats storage once, starts `java ... kafka.Kafka` detached, waits until
the broker answers and returns its bootstrap address; `down()` stops it. Used by `surplus kafka`
and by the test fixtures, so it needs nothing beyond the standard library and confluent-kafka.

`LocalKafka(home, secure=True)` is the same broker with SASL_SSL (SCRAM-SHA-512) instead of
PLAINTEXT, ACLs, and a throw-away test CA (openssl + keytool) under `home/secure/`; the client
settings for its `admin` user are written to `home/secure/client.env` (KAFKA_* variables).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from surplus.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_VERSION = "3.9.2"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "server.properties"
SECURE_TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "secure" / "server-secure.properties"
SCRAM_MECHANISM = "SCRAM-SHA-512"
CERT_DAYS = 825
DEFAULT_JARS = REPO_ROOT / "var" / "cache" / "kafka-jars"
DEFAULT_HOME = REPO_ROOT / "var" / "kafka"
DEFAULT_PORT = 9092
HOST = "127.0.0.1"

# Measured on 2 cores (JDK 17): C1-only JIT starts the broker in 1.7 s instead of 2.2 s and did not
# lower demo throughput; the serial collector keeps the footprint small. No C2 or G1 needed here.
JVM_FLAGS = (
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

LOG4J = """\
# Written by surplus/localkafka.py: everything WARN and above to {logs}/server.log, none to stdout.
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={logs}/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""

Progress = Callable[[str], None]
_STAMP = re.compile(r"^\[[^]]*\] ")  # log4j's "[2025-01-01 00:00:00,000] "
_EXCEPTION = re.compile(r"^[\w.$]+(Exception|Error)\b")  # "java.lang.RuntimeException: why"

# Brokers this process started: kept so their exit is reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 that does not start with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UserError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _tail(path: Path, lines: int = 12) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _private(path: Path, text: str) -> None:
    """Write a file only its owner can read (passwords, keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise UserError(f"could not {what}: {lines[-1] if lines else f'exit {done.returncode}'}")


def _java_client_properties(user: str, password: str, secure_dir: Path) -> str:
    """--command-config for Kafka's own tools (kafka-acls, kafka-topics) as `user`."""
    return (
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={SCRAM_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={secure_dir}/ca.pem\n"
    )


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
    ) -> None:
        self.home = Path(home).resolve()
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.heap_mb = heap_mb
        self.jars_dir = Path(jars_dir).resolve()
        self.progress = progress
        self.secure = secure
        self.mtls_port = mtls_port if secure else None  # an extra SSL listener, client certs
        self._log_offset = 0  # where server.log stood when this object last started the broker

    @classmethod
    def from_env(cls, **overrides: Any) -> LocalKafka:
        """The broker named by SURPLUS_KAFKA_HOME, _PORT and _CONTROLLER_PORT (else defaults)."""
        port = _env_port("SURPLUS_KAFKA_PORT", DEFAULT_PORT)
        kwargs: dict[str, Any] = {
            "home": Path(os.environ.get("SURPLUS_KAFKA_HOME") or DEFAULT_HOME),
            "port": port,
            "controller_port": _env_port("SURPLUS_KAFKA_CONTROLLER_PORT", port + 1),
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
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            return str(Path(java_home) / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise UserError("java not found on PATH: the local Kafka broker needs Java 17 "
                            "(e.g. apt install openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP "
                            "to use an existing cluster")
        return found

    def ensure_jars(self) -> Path:
        """Make sure the Kafka jars are in `jars_dir`, resolving them with Maven if not."""
        if (self.jars_dir / KAFKA_JAR).is_file():
            return self.jars_dir
        if not POM.is_file():
            raise UserError(f"the Kafka jars are not in {self.jars_dir} and {POM} is missing: "
                            "fetch them from a source checkout of surplus")
        mvn = shutil.which("mvn")
        if mvn is None:
            raise UserError(f"the Kafka jars are not in {self.jars_dir} and mvn is not on PATH: "
                            "install Maven (e.g. apt install maven) to fetch them once")
        self.progress(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into "
                      f"{self.jars_dir} (once) ...")
        self.jars_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.jars_dir}"],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0 or not (self.jars_dir / KAFKA_JAR).is_file():
            output = (done.stdout + done.stderr).splitlines()
            errors = [line for line in output if "ERROR" in line] or output or ["no output"]
            raise UserError(f"mvn could not fetch the Kafka jars: {errors[0].strip()}")
        return self.jars_dir

    def _jvm(self, java: str, heap_mb: int) -> list[str]:
        return [
            java, f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 128)}m", *JVM_FLAGS,
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", str(self.jars_dir / "*"),
        ]

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
        if not _accepts(self.port):
            return False
        try:
            metadata = self.admin().list_topics(timeout=timeout_s)
        except Exception:  # KafkaException while the broker is still coming up
            return False
        return bool(metadata.brokers)

    def admin(self) -> Any:
        """A confluent-kafka AdminClient for this broker, with librdkafka's logging silenced."""
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_config(extra={"log_level": 0}))

    def client_config(self, user: str = "admin", password: str | None = None,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings for a client of this broker (SASL_SSL as `user` when secure)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.secure:
            if password is None:
                password = self._passwords()[user]
            config.update({
                "security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": user, "sasl.password": password,
                "ssl.ca.location": str(self.secure_dir / "ca.pem"),
            })
        config.update(extra or {})
        return config

    def client_env(self) -> dict[str, str]:
        """The KAFKA_* variables with which agents, workers and `surplus` reach this broker."""
        if not self.secure:
            return {"KAFKA_BOOTSTRAP": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_SASL_USERNAME": "admin",
            "KAFKA_SASL_PASSWORD": self._passwords()["admin"],
            "KAFKA_SSL_CAFILE": str(self.secure_dir / "ca.pem"),
        }

    # -- up / down -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down on one home across processes (two `surplus kafka up` at once)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, timeout_s: float = 90) -> str:
        """Start the broker unless it is already running here; return its bootstrap address."""
        with self._locked():
            pid = self._running_pid()
            if pid is not None:
                running_secure = self.configured_secure()
                if self.secure and not running_secure:
                    raise UserError(f"a PLAINTEXT broker already runs in {self.home}: stop it "
                                    "(surplus kafka down) before `up --secure`")
                self.secure = running_secure
                self.port = self._rendered_port() or self.port
                self._wait_ready(pid, timeout_s)
                return self.bootstrap
            java = self.java()
            self.ensure_jars()
            for port in (self.port, self.controller_port, *filter(None, [self.mtls_port])):
                if _port_in_use(port):
                    raise UserError(f"{HOST}:{port} is already in use (another Kafka?); stop it "
                                    "or choose other ports with SURPLUS_KAFKA_PORT")
            self._write_config()
            self._format_storage(java)
            started = time.monotonic()
            self.progress(f"starting Apache Kafka {KAFKA_VERSION} (KRaft) on {self.bootstrap} "
                          f"in {self.home} ...")
            pid = self._spawn(java)
            self._wait_ready(pid, timeout_s)
            self.progress(f"Kafka is up on {self.bootstrap} (pid {pid}, "
                          f"{time.monotonic() - started:.1f} s)")
            if self.secure:
                self.progress(f"secure: SASL_SSL with {SCRAM_MECHANISM} and ACLs; the admin "
                              f"client's settings: set -a; . {self.secure_dir}/client.env")
            return self.bootstrap

    def _write_config(self) -> None:
        template = SECURE_TEMPLATE if self.secure else TEMPLATE
        if not template.is_file():
            raise UserError(f"{template} is missing: the local broker runs from a source checkout "
                            "of surplus (deploy/kafka/ holds its pom.xml and server.properties)")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {"port": self.port, "controller_port": self.controller_port,
                                  "data_dir": self.data_dir}
        if self.secure:
            passwords = self._passwords()
            self._ensure_pki(passwords["store"])
            mtls = self.mtls_port
            values.update(
                secure_dir=self.secure_dir, store_password=passwords["store"],
                broker_password=passwords["broker"],
                mtls_listener=f",MTLS://{HOST}:{mtls}" if mtls else "",
                mtls_advertised=f",MTLS://{HOST}:{mtls}" if mtls else "")
        self.props_file.touch(mode=0o600)
        self.props_file.chmod(0o600)  # the secure config holds the broker's passwords
        self.props_file.write_text(template.read_text().format(**values))
        (self.home / "log4j.properties").write_text(LOG4J.format(logs=self.logs_dir))
        if self.secure:
            env = "".join(f"{k}={v}\n" for k, v in self.client_env().items())
            _private(self.secure_dir / "client.env", env)
            _private(self.secure_dir / "admin.properties", _java_client_properties(
                "admin", self._passwords()["admin"], self.secure_dir))

    # -- secure mode: SCRAM passwords, the test CA, client certificates --------------------------

    def _passwords(self) -> dict[str, str]:
        """The broker's own, the admin's and the keystores' passwords (made once, mode 0600)."""
        path = self.secure_dir / "passwords.json"
        try:
            stored: dict[str, str] = json.loads(path.read_text())
            return stored
        except (OSError, ValueError):
            pass
        self.secure_dir.mkdir(parents=True, exist_ok=True)
        made = {name: secrets.token_hex(16) for name in ("store", "broker", "admin")}
        _private(path, json.dumps(made))
        return made

    def _ensure_pki(self, store_password: str) -> None:
        """A test CA, the broker's keystore (CN=broker) and a truststore holding the CA."""
        if (self.secure_dir / "broker.p12").is_file() and \
                (self.secure_dir / "truststore.p12").is_file():
            return
        keytool = shutil.which("keytool", path=str(Path(self.java()).parent)) or \
            shutil.which("keytool")
        if shutil.which("openssl") is None or keytool is None:
            raise UserError("`surplus kafka up --secure` needs openssl and keytool (from the JDK) "
                            "to make its test CA")
        self.progress(f"making a test CA and the broker's keystore in {self.secure_dir} ...")
        d = self.secure_dir
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(d / "ca.key"),
              "-out", str(d / "ca.pem"), "-days", str(CERT_DAYS), "-subj",
              "/CN=surplus-local-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "make the test CA")
        (d / "ca.key").chmod(0o600)
        self.issue_client_cert("broker", server=True)
        _run(["openssl", "pkcs12", "-export", "-in", str(d / "broker.pem"), "-inkey",
              str(d / "broker.key"), "-certfile", str(d / "ca.pem"), "-name", "broker",
              "-out", str(d / "broker.p12"), "-passout", f"pass:{store_password}"],
             "make the broker keystore")
        (d / "truststore.p12").unlink(missing_ok=True)
        _run([keytool, "-importcert", "-noprompt", "-alias", "surplus-ca", "-file",
              str(d / "ca.pem"), "-keystore", str(d / "truststore.p12"), "-storetype", "PKCS12",
              "-storepass", store_password], "make the truststore")

    def issue_client_cert(self, name: str, *, server: bool = False) -> tuple[Path, Path]:
        """(certificate, key) PEM files signed by the test CA with CN=`name` (its principal)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            raise UserError(f"certificate name {name!r} is not a plain identifier")
        d = self.secure_dir
        cert, key, csr, ext = (d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr",
                               d / f"{name}.ext")
        usage = "serverAuth,clientAuth" if server else "clientAuth"
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else ""
        ext.write_text(f"{san}extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(csr),
              "-subj", f"/O=surplus-local/CN={name}"], f"make a key for {name}")
        key.chmod(0o600)
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem"), "-CAkey",
              str(d / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", str(CERT_DAYS),
              "-extfile", str(ext)], f"sign the certificate of {name}")
        csr.unlink()
        ext.unlink()
        return cert, key

    def add_scram_user(self, name: str, password: str, timeout_s: float = 30) -> None:
        """Create or update a SCRAM-SHA-512 user through the Admin API (as admin)."""
        from confluent_kafka.admin import (
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode())
        admin = self.admin()  # kept alive until the futures resolve
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=timeout_s)

    def _format_storage(self, java: str) -> None:
        marker = self.secure_dir / "scram-users-formatted"
        if (self.data_dir / "meta.properties").is_file():
            if self.secure and not marker.is_file():
                raise UserError(f"{self.data_dir} was formatted without --secure (no SCRAM users): "
                                "use another --home, or delete it to start afresh")
            return
        id_file = self.home / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        self.progress(f"formatting Kafka storage in {self.data_dir} (cluster {cluster_id}) ...")
        scram: list[str] = []
        if self.secure:
            for user in ("broker", "admin"):
                password = self._passwords()[user]
                scram += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        done = subprocess.run(
            [*self._jvm(java, 256), "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self.props_file), *scram],
            capture_output=True, text=True, check=False,
        )
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
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise UserError(f"the Kafka broker exited during start-up: {self._last_words()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise UserError(f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} "
                                f"within {timeout_s:.0f} s; see {self.logs_dir}/server.log")
            time.sleep(0.2)

    def _last_words(self) -> str:
        """The JVM's last output lines and the ERROR/FATAL lines Kafka logged since this start."""
        output = _tail(self.logs_dir / "kafka.out", 3)
        try:
            with open(self.logs_dir / "server.log", "rb") as log:
                log.seek(self._log_offset)
                logged = log.read().decode(errors="replace").splitlines()
        except OSError:
            logged = []
        errors = [_STAMP.sub("", line) for line in logged
                  if " ERROR " in line or " FATAL " in line or _EXCEPTION.match(line)][-3:]
        tail = " | ".join(line.strip() for line in output + errors)
        return f"{tail or 'no output'} (logs in {self.logs_dir})"

    def down(self, timeout_s: float = 30) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after `timeout_s`. False if it was not running."""
        with self._locked():
            pid = self._running_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while self._alive(pid):
                    time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)
            return True

    # -- topics --------------------------------------------------------------------------------

    def create_topics(self, names: Iterable[str], partitions: int = 3,
                      timeout_s: float = 30) -> None:
        """Create topics that do not exist yet and wait until every partition has a leader."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        wanted = list(dict.fromkeys(names))
        admin = self.admin()
        existing = set(admin.list_topics(timeout=timeout_s).topics)
        new = [NewTopic(name, num_partitions=partitions, replication_factor=1)
               for name in wanted if name not in existing]
        if new:
            for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise UserError(f"could not create topic {name}: {exc.args[0].str()}"
                                        ) from exc
        deadline = time.monotonic() + timeout_s
        while True:
            topics = admin.list_topics(timeout=timeout_s).topics
            if all(name in topics and topics[name].partitions and not topics[name].error
                   and all(p.leader >= 0 for p in topics[name].partitions.values())
                   for name in wanted):
                return
            if time.monotonic() > deadline:
                raise UserError(f"topics {wanted} have no leader after {timeout_s:.0f} s")
            time.sleep(0.1)
