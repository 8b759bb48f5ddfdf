"""The agent's Kafka producer (idempotent, acks=all, lz4) and topic set-up. I/O: the ONLY
module of agents/ that imports confluent_kafka.

An event is done only when its delivery report says so: `send` hands a spool record to
librdkafka and the report calls back with the record and `None` or a `DeliveryError`. Messages
never time out inside librdkafka by default (`message_timeout_ms = 0`): during a broker outage
they wait and are retried in order, while the spool keeps them safe from a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Producer

from agents.delivery import DeliveryError, OnDelivery
from agents.records import TOPIC_OF_KIND, Record
from agents.watch import BrokerWatch
from schemas.events import CONTENT_TYPE
from schemas.topics import Topics
from surplus.errors import UserError
from surplus.logs import kafka_service

if TYPE_CHECKING:
    from agents.settings import KafkaSettings

log = logging.getLogger("agents.kafka")

# errors after which resending the same bytes can never succeed: the record is given up
PERMANENT = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                       KafkaError.INVALID_MSG, KafkaError.INVALID_MSG_SIZE,
                       KafkaError.RECORD_LIST_TOO_LARGE})
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


# (value bytes, message key = dc_id) -> the signature header; a fleet signs each DC with its own key
Signer = Callable[[bytes, bytes], tuple[str, bytes]]


def producer_config(kafka: KafkaSettings, client_id: str, logger: object = None) -> dict[str, Any]:
    """librdkafka settings: the connection (bootstrap, security), idempotence, acks=all, lz4,
    batching, then `extra`. librdkafka's logs go to `logger` (an agents.watch.BrokerWatch, or a
    logging.Logger)."""
    return kafka.librdkafka({
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": kafka.linger_ms,
        "message.timeout.ms": kafka.message_timeout_ms,
        "queue.buffering.max.messages": max(1000, kafka.max_in_flight_events * 2),
        "logger": logger if logger is not None else logging.getLogger("agents.librdkafka"),
        "log.connection.close": False,
        **kafka.extra,
    })


class KafkaPublisher:
    """Sends spool records to their topics, key = dc_id, with the CloudEvents content type."""

    def __init__(self, kafka: KafkaSettings, *, on_delivery: OnDelivery,
                 client_id: str = "surplus-agent", signer: Signer | None = None,
                 watch: BrokerWatch | None = None) -> None:
        self.kafka = kafka
        self.topics = {kind: Topics(kafka.topic_prefix).name(short)
                       for kind, short in TOPIC_OF_KIND.items()}
        self._on_delivery = on_delivery
        self._signer = signer
        self.watch = watch or BrokerWatch(kafka_service(kafka.bootstrap))
        self._config = producer_config(kafka, client_id, self.watch)
        self._config["error_cb"] = self._error
        self._headers: list[tuple[str, str | bytes | None]] = [("content-type", CONTENT_TYPE.encode())]
        self._producer = self._new_producer()

    def _new_producer(self) -> Producer:
        try:
            return Producer(self._config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise UserError(f"bad Kafka settings: {exc}") from None

    def _error(self, err: KafkaError) -> None:
        self.watch.error(err.name(), err.str())  # a down broker repeats itself: one line per change

    def send(self, rec: Record) -> bool:
        """Hand one record to librdkafka; False when its queue is full (poll, then retry)."""
        headers = self._headers
        if self._signer is not None:
            headers = [*headers, self._signer(rec.value, rec.key)]
        try:
            self._producer.produce(self.topics[rec.kind], rec.value, rec.key, headers=headers,
                                   on_delivery=partial(self._report, rec))
        except BufferError:
            return False
        except KafkaException as exc:  # refused on the spot (e.g. larger than message.max.bytes)
            self._report(rec, exc.args[0])
        return True

    def _report(self, rec: Record, err: KafkaError | None, _msg: object = None) -> None:
        if err is None:
            self._on_delivery(rec, None)
            return
        code = err.code()
        self._on_delivery(rec, DeliveryError(
            err.name(), err.str(), permanent=code in PERMANENT, fatal=err.fatal(),
            purged=code in PURGED))

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery reports (and logs) for up to `timeout_s`; return how many were served."""
        served: int = self._producer.poll(timeout_s)
        return served

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; return how many are still outstanding."""
        left: int = self._producer.flush(timeout_s)
        return left

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    def reset(self) -> None:
        """Drop everything queued and start a fresh producer (after a fatal error)."""
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)
        self._producer = self._new_producer()

    def close(self, timeout_s: float) -> int:
        return self.flush(timeout_s)


def ensure_topics(kafka: KafkaSettings, timeout_s: float = 15) -> list[str]:
    """Create the five telemetry topics under the prefix if they are missing (for local setups)."""
    from surplus.kafka.admin import ensure_topics as create

    return create(kafka.connection(), Topics(kafka.topic_prefix).telemetry, timeout_s=timeout_s)


def fleet_signer(keys: dict[str, Any]) -> Signer:
    """Signs each event with the key of the DC in its message key (simulated fleets, one producer)."""
    from schemas.signing import sign

    by_key = {dc_id.encode(): key for dc_id, key in keys.items()}
    return lambda value, dc_key: sign(value, by_key[dc_key])


def make_signer(path: object, dc_id: str) -> Signer:
    """A signer from a DC's key file, via schemas.signing (UserError if unusable or unavailable)."""
    try:
        from schemas.signing import load_signing_key, sign
    except ImportError:
        raise UserError("signing_key_file is set but schemas.signing is not available in this "
                        "install; unset it or upgrade surplus") from None
    try:
        key = load_signing_key(path)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UserError(f"signing key: {exc}") from None
    if getattr(key, "dc_id", dc_id) != dc_id:
        raise UserError(f"signing key {path} belongs to DC {key.dc_id!r}, this agent is {dc_id!r}")
    return lambda value, _key: sign(value, key)
