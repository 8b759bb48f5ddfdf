"""Events of a test fleet as agents built on the official CloudEvents SDKs send them: the Python
SDK (`cloudevents`, its Kafka binding, structured and binary mode) and the Java SDK's Kafka
serializer (binary mode, tests/clients/cloudevents-java). Test helpers (I/O: Maven, java, Kafka)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.fleet import Message
from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
JAVA_CLIENT = REPO / "tests" / "clients" / "cloudevents-java"
JAVA_BUILD = REPO / "var" / "cache" / "cloudevents-java"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# snippet:python:start
def to_kafka(event: dict[str, Any], mode: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one Surplus event built with the CloudEvents Python SDK."""
    from cloudevents.core.bindings import kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    attributes = {
        "id": event["id"],
        "source": event["source"],  # "//cpn/dc/<dc_id>"
        "type": event["type"],  # e.g. "cpn.capacity.v1"
        "time": datetime.fromisoformat(event["time"]),
        "datacontenttype": "application/json",
        "traceparent": TRACEPARENT,  # any extension attribute is accepted and ignored
    }
    ce = CloudEvent(attributes=attributes, data=event["data"])
    convert = kafka.to_structured if mode == "structured" else kafka.to_binary
    message = convert(ce, JSONFormat())
    key = event["data"]["dc_id"].encode()  # message key = dc_id
    return key, message.value, list(message.headers.items())
# snippet:python:end


def python_sdk(messages: Iterable[Message], mode: str) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    """(topic, key, value, headers) per message: events through the SDK, poison as it was."""
    out = []
    for m in messages:
        if m.event is None:
            out.append((m.topic, m.key or b"", m.value, []))
        else:
            out.append((m.topic, *to_kafka(m.event, mode)))
    return out


def publish(bootstrap: str, prefix: str, records: Iterable[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> int:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5})
    failures: list[str] = []
    n = 0
    for topic, key, value, headers in records:
        while True:
            try:
                producer.produce(prefix + topic, value, key=key, headers=headers,
                                 on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    assert producer.flush(60) == 0 and not failures, failures[:3]
    return n


def java_client() -> list[str]:
    """The java command line of the built Java client (built by Maven once, cached under var/)."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        unavailable("Java 17+ and Maven are needed for the CloudEvents Java SDK client")
    sources = [*sorted(JAVA_CLIENT.rglob("*.java")), JAVA_CLIENT / "pom.xml"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    stamp = JAVA_BUILD / ".built"
    if not stamp.exists() or stamp.read_text() != digest:
        done = subprocess.run(["mvn", "-q", "-B", "-f", str(JAVA_CLIENT / "pom.xml"), "package",
                               f"-Dsurplus.build={JAVA_BUILD}"], capture_output=True, text=True,
                              timeout=900, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        stamp.write_text(digest)
    classpath = f"{JAVA_BUILD / 'classes'}:{JAVA_BUILD / 'lib'}/*"
    return ["java", "-cp", classpath, "cn.cpn.surplus.clients.Produce"]


def java_sdk_publish(bootstrap: str, prefix: str, messages: Iterable[Message]) -> int:
    """Valid events through the Java SDK's serializer (binary mode); poison published as it was."""
    messages = list(messages)
    poison = [(m.topic, m.key or b"", m.value, []) for m in messages if m.event is None]
    events = tsv(messages)
    done = subprocess.run([*java_client(), bootstrap, prefix], input=events,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip()) == events.count("\n"), done.stdout
    return events.count("\n") + publish(bootstrap, prefix, poison)


GO_CLIENT = REPO / "tests" / "clients" / "kafka-go"
GO_BUILD = REPO / "var" / "cache" / "kafka-go-client"


def go_client() -> Path:
    """The built Go client (segmentio/kafka-go; `go build`, cached under var/)."""
    if shutil.which("go") is None:
        unavailable("Go is needed for the Go client")
    sources = [GO_CLIENT / n for n in ("go.mod", "go.sum", "main.go")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    binary, stamp = GO_BUILD / "produce", GO_BUILD / ".built"
    if not binary.exists() or not stamp.exists() or stamp.read_text() != digest:
        GO_BUILD.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GO_CLIENT, capture_output=True,
                              text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        stamp.write_text(digest)
    return binary


def tsv(messages: Iterable[Message]) -> str:
    """The clients' input: one valid event per line (topic, key, id, source, type, time, data)."""
    lines = []
    for m in messages:
        if m.event is not None:
            e = m.event
            lines.append("\t".join([m.topic, e["data"]["dc_id"], e["id"], e["source"], e["type"], e["time"],
                                    json.dumps(e["data"])]))
    return "\n".join(lines) + "\n"
