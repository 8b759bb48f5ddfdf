"""How to reach Kafka: one model of bootstrap and security for every client of the project. Config.

`KafkaConnection` is the model (bootstrap servers, security protocol, SASL, TLS files). The
agent's `[kafka]` settings extend it, the worker's settings hold one, and `from_env()` reads one
from the shared variables, so the agent's publisher, the worker (faust/aiokafka), the admin
helpers, the demo and the tests build their clients from the same fields:

    KAFKA_BOOTSTRAP           host:port[,host:port]                        (default 127.0.0.1:9092)
    KAFKA_SECURITY_PROTOCOL   PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL  (default PLAINTEXT)
    KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512        (default SCRAM-SHA-512)
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD
    KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE                (PEM files)

`librdkafka()` renders it for confluent-kafka, `ssl_context()` for aiokafka/faust, `env()` as the
variables above (for a child process). Nothing here opens a connection.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ENV_PREFIX = "KAFKA_"


class KafkaConnection(BaseModel):
    """Bootstrap servers and security of a Kafka cluster. ValueError: SASL without credentials."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bootstrap: str = Field("127.0.0.1:9092", min_length=1,
                           description="Kafka bootstrap servers, host:port[,host:port]")
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    # the second names are the agent's keys before this model existed; both are accepted
    sasl_username: str | None = Field(None, validation_alias=AliasChoices("sasl_username", "username"),
                                      description="SASL user name")
    sasl_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("sasl_password", "password"),
        description="SASL password (never logged)")
    ssl_cafile: Path | None = Field(None, validation_alias=AliasChoices("ssl_cafile", "ssl_ca_location"),
                                    description="CA certificate file (PEM)")
    ssl_certfile: Path | None = Field(
        None, validation_alias=AliasChoices("ssl_certfile", "ssl_certificate_location"),
        description="client certificate (PEM, mTLS)")
    ssl_keyfile: Path | None = Field(None, validation_alias=AliasChoices("ssl_keyfile", "ssl_key_location"),
                                     description="client key (PEM, mTLS)")

    @model_validator(mode="after")
    def _credentials(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and "
                             "sasl_password (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)")
        return self

    @property
    def password(self) -> str:
        return self.sasl_password.get_secret_value() if self.sasl_password else ""

    def connection(self) -> KafkaConnection:
        """Only the connection fields (of a model that extends this one)."""
        return KafkaConnection.model_validate(
            {name: getattr(self, name) for name in KafkaConnection.model_fields})

    def librdkafka(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """confluent-kafka (librdkafka) settings: bootstrap.servers, security, then `extra`."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap,
                                  "security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            config.update({"sasl.mechanism": self.sasl_mechanism,
                           "sasl.username": self.sasl_username or "", "sasl.password": self.password})
        for key, path in (("ssl.ca.location", self.ssl_cafile),
                          ("ssl.certificate.location", self.ssl_certfile),
                          ("ssl.key.location", self.ssl_keyfile)):
            if path is not None:
                config[key] = str(path)
        config.update(extra or {})
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka/faust (None for PLAINTEXT and SASL_PLAINTEXT)."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def env(self) -> dict[str, str]:
        """The KAFKA_* variables that describe this connection (for a child process)."""
        out = {"KAFKA_BOOTSTRAP": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            out.update(KAFKA_SASL_MECHANISM=self.sasl_mechanism,
                       KAFKA_SASL_USERNAME=self.sasl_username or "", KAFKA_SASL_PASSWORD=self.password)
        for name, path in (("KAFKA_SSL_CAFILE", self.ssl_cafile), ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
                           ("KAFKA_SSL_KEYFILE", self.ssl_keyfile)):
            if path is not None:
                out[name] = str(path)
        return out


# environment variable -> field, for settings models that merge these variables into their own
ENV_FIELDS = {f"{ENV_PREFIX}{name.upper()}": name for name in KafkaConnection.model_fields}


def from_env(**overrides: Any) -> KafkaConnection:
    """A connection from the KAFKA_* variables; keyword arguments that are not None win.

    Raises pydantic.ValidationError on a bad value (e.g. SASL without a password)."""
    import os

    values: dict[str, Any] = {name: os.environ[env] for env, name in ENV_FIELDS.items() if os.environ.get(env)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return KafkaConnection.model_validate(values)


def coerce(kafka: KafkaConnection | str) -> KafkaConnection:
    """A connection as given, or, for a bare bootstrap string, that string with the KAFKA_* security."""
    return kafka if isinstance(kafka, KafkaConnection) else from_env(bootstrap=kafka)
