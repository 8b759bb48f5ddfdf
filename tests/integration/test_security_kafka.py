"""The secure local broker (`surplus kafka up --secure`): SASL_SSL/SCRAM, mTLS and the documented ACLs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from surplus.kafka.local import LocalKafka
from surplus.kafka.ports import free_port
from tests.services import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
ACLS_DOC = REPO / "deploy" / "kafka" / "acls.md"
TELEMETRY = ["cpn.registry", "cpn.capacity", "cpn.power", "cpn.jobs", "cpn.heartbeat"]
QUIET = {"log_level": 0, "socket.timeout.ms": 5000}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """One secure broker (SASL_SSL + an mTLS listener) per module, always stopped afterwards."""
    if shutil.which("java") is None or shutil.which("openssl") is None:
        unavailable("java and openssl are needed for the secure broker")
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka-secure"), port=free_port(),
                       controller_port=free_port(), heap_mb=384, progress=lambda m: None,
                       secure=True, mtls_port=free_port())
    try:
        kafka.up(timeout_s=90)
        kafka.create_topics([*TELEMETRY, "cpn.deadletter"], partitions=1)
        yield kafka
    finally:
        kafka.down(timeout_s=15)


def _round_trip(config: dict[str, Any], topic: str, value: bytes) -> bytes:
    producer = Producer({**config, "acks": "all"})
    producer.produce(topic, value, key=b"k")
    assert producer.flush(15) == 0
    consumer = Consumer({**config, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.value() == value:
                return message.value()  # type: ignore[no-any-return]
        raise AssertionError("message not consumed within 20 s")
    finally:
        consumer.close()


def _refused(config: dict[str, Any], deadline_s: float = 10) -> list[KafkaError]:
    """The errors a client meets at connect time; the broker must refuse it within the deadline."""
    errors: list[KafkaError] = []
    producer = Producer({**config, **QUIET, "error_cb": errors.append})
    deadline = time.monotonic() + deadline_s
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    assert errors, f"no error within {deadline_s} s"
    with pytest.raises(KafkaException):  # and it gets no metadata at all
        producer.list_topics(timeout=1)
    producer.poll(0.1)
    return errors


def test_good_principal_produces_and_consumes_over_sasl_ssl(secure: LocalKafka) -> None:
    config = secure.client_config("admin", extra=QUIET)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    value = f"hello {uuid.uuid4()}".encode()
    assert _round_trip(config, "cpn.capacity", value) == value


def test_wrong_password_is_an_authentication_error(secure: LocalKafka) -> None:
    errors = _refused(secure.client_config("admin", password="wrong-password"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_unknown_user_is_an_authentication_error(secure: LocalKafka) -> None:
    errors = _refused(secure.client_config("nobody", password="x"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_unauthenticated_plaintext_client_is_refused(secure: LocalKafka) -> None:
    _refused({"bootstrap.servers": secure.bootstrap})
    _refused({"bootstrap.servers": f"127.0.0.1:{secure.mtls_port}"})  # nor on the mTLS listener


def test_tls_without_a_client_certificate_is_refused_on_the_mtls_listener(
        secure: LocalKafka) -> None:
    _refused({"bootstrap.servers": f"127.0.0.1:{secure.mtls_port}", "security.protocol": "SSL",
              "ssl.ca.location": str(secure.secure_dir / "ca.pem")})


def _run_documented_acls(secure: LocalKafka) -> None:
    """Run the kafka-acls commands of deploy/kafka/acls.md, verbatim, with Kafka's AclCommand."""
    block = ACLS_DOC.read_text().split("<!-- acls:begin -->")[1].split("<!-- acls:end -->")[0]
    commands = [line for line in block.splitlines() if line.startswith("kafka-acls.sh ")]
    assert len(commands) >= 4
    java = shutil.which("java")
    assert java is not None
    running = []
    for command in commands:  # in parallel: each is a JVM start
        args = re.findall(r'"[^"]*"|\S+', command)[1:]
        args = [secure.bootstrap if a == '"$BOOTSTRAP"' else a for a in args]
        args = [str(secure.secure_dir / "admin.properties") if a == "admin.properties" else a
                for a in args]
        running.append(subprocess.Popen(
            [java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto",
             "-Dlog4j.configuration=file:" + str(secure.home / "log4j.properties"),
             "-cp", str(secure.jars_dir / "*"), "kafka.admin.AclCommand", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for child in running:
        output, _ = child.communicate(timeout=60)
        assert child.returncode == 0, output


@pytest.fixture(scope="module")
def acls(secure: LocalKafka) -> dict[str, str]:
    """The documented ACLs applied; SCRAM users for one DC and the workers (name -> password)."""
    users = {"gz-guian-01": uuid.uuid4().hex, "surplus-worker": uuid.uuid4().hex}
    for name, password in users.items():
        secure.add_scram_user(name, password)
    _run_documented_acls(secure)
    return users


def _deliver(config: dict[str, Any], topic: str) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, **QUIET, "message.timeout.ms": 10000})
    producer.produce(topic, b"{}", key=b"gz-guian-01",
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(15)
    assert outcome, "no delivery report within 15 s"
    return outcome[0]


def test_a_dc_principal_may_only_write_telemetry(secure: LocalKafka,
                                                 acls: dict[str, str]) -> None:
    dc = secure.client_config("gz-guian-01", acls["gz-guian-01"])
    for topic in TELEMETRY:
        assert _deliver(dc, topic) is None, topic
    denied = _deliver(dc, "cpn.deadletter")
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer = Consumer({**dc, **QUIET, "group.id": "surplus-workers",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["cpn.capacity"])
        error = None
        deadline = time.monotonic() + 15
        while error is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                error = message.error()
            assert message is None or message.error() is not None, "a DC read telemetry"
        assert error is not None and "AUTHORIZATION" in error.name(), error
    finally:
        consumer.close()


def test_the_worker_principal_reads_telemetry_and_writes_dead_letters(
        secure: LocalKafka, acls: dict[str, str]) -> None:
    worker = secure.client_config("surplus-worker", acls["surplus-worker"])
    assert _deliver(worker, "cpn.deadletter") is None
    denied = _deliver(worker, "cpn.capacity")  # workers do not forge telemetry
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer = Consumer({**worker, **QUIET, "group.id": "surplus-workers",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["cpn.registry"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                return
        raise AssertionError("the worker read nothing from cpn.registry")
    finally:
        consumer.close()


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("KAFKA_"):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_settings_from_env_reach_the_broker_through_both_clients(
        secure: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_* as documented: librdkafka (agents, admin) and faust's aiokafka (workers)."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import credentials
    from surplus.kafka.admin import ensure_topics
    from surplus.kafka.connection import from_env

    _env(monkeypatch, secure.client_env())
    topic = f"cpn.t{uuid.uuid4().hex[:8]}"
    assert ensure_topics(secure.bootstrap, [topic], partitions=1) == [topic]
    auth = credentials_to_aiokafka_auth(credentials(from_env()))
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    value = uuid.uuid4().bytes
    assert asyncio.run(_aiokafka_round_trip(secure.bootstrap, topic, value, auth)) == value


def test_mtls_client_from_env(secure: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_SECURITY_PROTOCOL=SSL with a client certificate: principal = its CN (a super user
    here, so that this tests authentication, not the ACLs)."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import credentials
    from surplus.kafka.admin import client_config
    from surplus.kafka.connection import from_env

    cert, key = secure.issue_client_cert("admin")
    _env(monkeypatch, {"KAFKA_SECURITY_PROTOCOL": "SSL",
                       "KAFKA_SSL_CAFILE": str(secure.secure_dir / "ca.pem"),
                       "KAFKA_SSL_CERTFILE": str(cert), "KAFKA_SSL_KEYFILE": str(key)})
    bootstrap = f"127.0.0.1:{secure.mtls_port}"
    value = uuid.uuid4().bytes
    assert _round_trip(client_config(bootstrap, QUIET), "cpn.power", value) == value
    auth = credentials_to_aiokafka_auth(credentials(from_env()))
    assert auth["security_protocol"] == "SSL"
    assert asyncio.run(_aiokafka_round_trip(bootstrap, "cpn.power", value, auth)) == value


async def _aiokafka_round_trip(bootstrap: str, topic: str, value: bytes,
                               auth: Any) -> bytes:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **auth)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", **auth)
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            async for message in consumer:
                if message.value == value:
                    return value
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


def test_cli_up_secure_is_idempotent_and_status_says_sasl_ssl(secure: LocalKafka) -> None:
    cli = [str(BIN / "surplus")] if (BIN / "surplus").is_file() else [sys.executable, "-m",
                                                                        "surplus.cli"]
    env = {**os.environ, "SURPLUS_KAFKA_HOME": str(secure.home),
           "SURPLUS_KAFKA_PORT": str(secure.port)}
    up = subprocess.run([*cli, "kafka", "up", "--secure"], env=env, capture_output=True,
                        text=True, timeout=60, check=False)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == secure.bootstrap
    status = subprocess.run([*cli, "kafka", "status"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert "SASL_SSL" in status.stdout
    password = secure.client_env()["KAFKA_SASL_PASSWORD"]
    assert password not in up.stdout + up.stderr + status.stdout + status.stderr
    for name in ("client.env", "admin.properties", "passwords.json", "ca.key", "broker.key"):
        assert (secure.secure_dir / name).stat().st_mode & 0o077 == 0, name
    assert secure.props_file.stat().st_mode & 0o077 == 0


@pytest.mark.clickhouse
def test_signed_events_end_to_end_agent_to_worker_over_sasl_ssl(
        secure: LocalKafka, acls: dict[str, str], store: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's producer (its settings, its signer) as DC gz-guian-01, the worker's consumer
    (faust credentials) as surplus-worker, the real Handler with the key registry: a genuine
    event is stored; a tampered one and a spoof of another DC are bad_signature dead letters."""
    import json

    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from agents.publisher import make_signer, producer_config
    from agents.settings import KafkaSettings
    from schemas.catalogue import load_catalogue
    from schemas.prices import PriceBook
    from streams.app import credentials
    from streams.signing import load_verifier
    from streams.sink import Sink
    from streams.worker import Handler
    from surplus.kafka.connection import from_env

    secret = os.urandom(32).hex()
    (tmp_path / "gz.key").write_text(
        f'key_id = "gz-e2e"\ndc_id = "gz-guian-01"\nalg = "hmac-sha256"\nsecret = "{secret}"\n')
    (tmp_path / "keys.toml").write_text(
        f'[[key]]\nkey_id = "gz-e2e"\ndc_id = "gz-guian-01"\nsecret = "{secret}"\n')
    signer = make_signer(tmp_path / "gz.key", "gz-guian-01")
    golden = json.loads((REPO / "schemas/examples/cpn.capacity.v1.json").read_text())
    run = uuid.uuid4().hex[:8]

    def event(event_id: str, dc: str = "gz-guian-01") -> bytes:
        obj = {**golden, "id": f"{run}-{event_id}", "source": f"//cpn/dc/{dc}",
               "data": {**golden["data"], "dc_id": dc}}
        return json.dumps(obj).encode()

    genuine, tampered, spoof = event("ok"), event("tampered"), event("spoof", "bj-01")
    messages = [(genuine, signer(genuine, b"gz-guian-01"), b"gz-guian-01"),
                (tampered.replace(b"380", b"3"), signer(tampered, b"gz-guian-01"), b"gz-guian-01"),
                (spoof, signer(spoof, b"bj-01"), b"bj-01")]
    agent = KafkaSettings(bootstrap=secure.bootstrap, security_protocol="SASL_SSL",
                          username="gz-guian-01", password=acls["gz-guian-01"],
                          ssl_ca_location=secure.secure_dir / "ca.pem")
    producer = Producer({**producer_config(agent, "agent-e2e"), **QUIET})
    for value, header, key in messages:
        producer.produce("cpn.capacity", value, key=key, headers=[header])
    assert producer.flush(15) == 0

    _env(monkeypatch, {**secure.client_env(), "KAFKA_SASL_USERNAME": "surplus-worker",
                       "KAFKA_SASL_PASSWORD": acls["surplus-worker"]})
    auth = credentials_to_aiokafka_auth(credentials(from_env()))
    records = asyncio.run(_consume_ours(secure.bootstrap, "cpn.capacity", run.encode(), 3, auth))
    handler = Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                      prices=PriceBook.load(), deadletter_topic="cpn.deadletter",
                      verifier=load_verifier(tmp_path / "keys.toml"))
    asyncio.run(handler(records))
    assert handler.metrics.rejected == {"bad_signature": 2}
    stored = store.rows("SELECT event_id FROM {db}.capacity_samples FINAL")
    assert stored == [(f"{run}-ok",)]
    details = [d for (d,) in store.rows("SELECT detail FROM {db}.deadletter FINAL ORDER BY offset")]
    assert "does not match" in details[0] and "belongs to DC 'gz-guian-01'" in details[1]


async def _consume_ours(bootstrap: str, topic: str, marker: bytes, count: int,
                        auth: Any) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    from streams.batch import Record

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="surplus-workers",
                                enable_auto_commit=False, auto_offset_reset="earliest", **auth)
    await consumer.start()
    found: list[Record] = []
    try:
        async with asyncio.timeout(30):
            async for m in consumer:
                if marker in (m.value or b""):
                    found.append(Record(m.topic, m.partition, m.offset, m.key, m.value,
                                        tuple(m.headers or ())))
                    if len(found) == count:
                        return found
    finally:
        await consumer.stop()
    return found


# -- mTLS principals from adversarial certificate subjects (issue #21) ------------------------------
# openssl -subj order is the reverse of RFC 2253's, which is what Kafka's mapping rules see:
# "/O=x/CN=a" is "CN=a,O=x". Each subject below tries to become the victim DC's principal.
VICTIM = "gz-guian-01"
ADVERSARIAL = {
    "two CNs": f"/CN={VICTIM}/O=surplus-local/CN=attacker-dc",
    "escaped comma": f"/OU=x\\,CN={VICTIM}/CN=attacker-dc",
    "CN inside OU": f"/OU=CN={VICTIM}/CN=attacker-dc",
    "multi-valued RDN": f"/CN=attacker-dc+CN={VICTIM}",
    "empty CN": "/O=surplus-local/CN=",
    "only O": f"/O={VICTIM}",
    "upper case": f"/CN={VICTIM.upper()}",
}


def _signed_by_careless_ca(secure: LocalKafka, label: str, subject: str) -> tuple[Path, Path]:
    """A client certificate with `subject`, signed by the test CA without any check (as a
    careless CA would sign a CSR that the DC wrote itself)."""
    d = secure.secure_dir
    stem = "adv-" + re.sub(r"[^a-z]+", "-", label)
    key, csr, cert, ext = (d / f"{stem}.key", d / f"{stem}.csr", d / f"{stem}.pem", d / f"{stem}.ext")
    ext.write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject, "-multivalue-rdn"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem"), "-CAkey",
                    str(d / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return cert, key


PRODUCE_AS = r"""
import json, sys, time
from confluent_kafka import Producer
config, topic, key = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
delivered = []
producer = Producer(config)
producer.produce(topic, b"x", key=key.encode(), on_delivery=lambda err, _m: delivered.append(err is None))
deadline = time.monotonic() + 15
while not delivered and time.monotonic() < deadline:
    producer.poll(0.2)
print("written" if delivered == [True] else "refused")
"""


def _produce_as(secure: LocalKafka, cert: Path, key: Path, topic: str) -> str | None:
    """None when the record was written, else the error the client met (a client process of its own)."""
    config = {"bootstrap.servers": f"127.0.0.1:{secure.mtls_port}", "security.protocol": "SSL",
              "ssl.ca.location": str(secure.secure_dir / "ca.pem"), "ssl.certificate.location": str(cert),
              "ssl.key.location": str(key), "message.timeout.ms": 8000}
    done = subprocess.run([sys.executable, "-c", PRODUCE_AS, json.dumps(config), topic, VICTIM],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-1000:]
    outcome = done.stdout.strip().splitlines()[-1]
    return None if outcome == "written" else outcome


@pytest.fixture(scope="module")
def victim_topic(secure: LocalKafka) -> str:
    """A topic only the victim DC's principal may write (an ACL like acls.md's)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    topic = f"victim-{uuid.uuid4().hex[:6]}"
    secure.create_topics([topic], partitions=1)
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{VICTIM}", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    admin = secure.admin()  # kept alive until the futures resolve
    for future in admin.create_acls([binding]).values():
        future.result(timeout=30)
    return topic


def test_the_victims_own_certificate_writes(secure: LocalKafka, victim_topic: str) -> None:
    cert, key = secure.issue_client_cert(VICTIM)
    deadline = time.monotonic() + 30  # ACLs propagate to the authorizer asynchronously
    while (error := _produce_as(secure, cert, key, victim_topic)) is not None and time.monotonic() < deadline:
        time.sleep(1)
    assert error is None, error


@pytest.mark.parametrize("label", sorted(ADVERSARIAL))
def test_an_adversarial_subject_never_becomes_another_dcs_principal(
    secure: LocalKafka, victim_topic: str, label: str
) -> None:
    cert, key = _signed_by_careless_ca(secure, label, ADVERSARIAL[label])
    error = _produce_as(secure, cert, key, victim_topic)
    assert error is not None, f"a certificate with subject {ADVERSARIAL[label]!r} wrote as User:{VICTIM}"


@pytest.mark.parametrize("label", sorted(ADVERSARIAL))
def test_sign_csr_refuses_adversarial_subjects(secure: LocalKafka, label: str, tmp_path: Path) -> None:
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", ADVERSARIAL[label], "-multivalue-rdn"],
                   check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "surplus.cli", "kafka", "sign-csr", str(csr), "--name", VICTIM,
                           "--home", str(secure.home)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and "refused" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_sign_csr_signs_a_plain_subject_for_its_own_dc(secure: LocalKafka, tmp_path: Path) -> None:
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/O=Guian DC/CN={VICTIM}"],
                   check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "surplus.cli", "kafka", "sign-csr", str(csr), "--name", VICTIM,
                           "--home", str(secure.home)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    cert = Path(done.stdout.strip().splitlines()[-1])
    assert cert.is_file()
    wrong = subprocess.run([sys.executable, "-m", "surplus.cli", "kafka", "sign-csr", str(csr), "--name",
                            "bj-01", "--home", str(secure.home)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert wrong.returncode == 2 and "not the DC" in wrong.stderr
