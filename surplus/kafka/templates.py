"""The local broker's configuration files, rendered from deploy/kafka/ templates. Pure (text).

`server_properties(...)` fills `deploy/kafka/server.properties` (or the secure one) with ports,
directories and passwords; `LOG4J` keeps the broker's log in a file; `java_client_properties`
is the `--command-config` of Kafka's own tools; `cluster_id()` a fresh KRaft cluster id.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from surplus.errors import UserError
from surplus.kafka.jars import REPO_ROOT

TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "server.properties"
SECURE_TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "secure" / "server-secure.properties"
SCRAM_MECHANISM = "SCRAM-SHA-512"

LOG4J = """\
# Written by surplus/kafka/templates.py: everything WARN and above to {logs}/server.log, none to stdout.
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={logs}/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


def cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 that does not start with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(secure: bool, values: dict[str, Any]) -> str:
    """The broker's server.properties: the template's `{name}` fields filled from `values`."""
    template = SECURE_TEMPLATE if secure else TEMPLATE
    if not template.is_file():
        raise UserError(f"{template} is missing: the local broker runs from a source checkout "
                        "of surplus (deploy/kafka/ holds its pom.xml and server.properties)")
    return template.read_text().format(**values)


def log4j_properties(logs_dir: Path) -> str:
    return LOG4J.format(logs=logs_dir)


def java_client_properties(user: str, password: str, secure_dir: Path) -> str:
    """--command-config for Kafka's own tools (kafka-acls, kafka-topics) as `user`."""
    return (
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={SCRAM_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={secure_dir}/ca.pem\n"
    )


def java_argfile(args: list[str]) -> str:
    """A Java launcher argument file (`java @file`) holding `args`, one quoted argument a line.

    Inside double quotes the launcher reads a doubled backslash as one backslash and a
    backslash-quote as a quote (JDK `java` command, "java Command-Line Argument Files")."""
    def quoted(arg: str) -> str:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(quoted(a) + "\n" for a in args)
