"""The agent's Prometheus metrics (`/metrics`, SPEC §7) when SURPLUS_METRICS_PORT is set. I/O (HTTP).

Served by prometheus_client's own HTTP server from a registry of this agent only. The figures
are read from a snapshot the agent's loop refreshes (`AgentMetrics.refresh`), so a scrape never
touches the spool while the loop writes it:

| metric | type | what |
| --- | --- | --- |
| `surplus_agent_events_in_total{type}` | counter | events collected and spooled |
| `surplus_agent_events_out_total` | counter | events delivered (acknowledged by the broker) |
| `surplus_agent_delivery_errors_total` | counter | delivery reports with an error (resent or given up) |
| `surplus_agent_events_rejected_total` | counter | events the broker can never take (given up) |
| `surplus_agent_kafka_errors_total` | counter | librdkafka errors (connection trouble included) |
| `surplus_agent_collector_errors_total{collector}` | counter | collector turns that failed |
| `surplus_agent_spool_backlog_events` | gauge | events spooled and not yet delivered |
| `surplus_agent_spool_oldest_unsent_age_seconds` | gauge | age of the oldest undelivered event |
| `surplus_agent_spool_bytes` | gauge | bytes on disk in the spool |
| `surplus_agent_broker_up` | gauge | 1 when the broker is reachable |
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agents.outbox import Outbox


class AgentMetrics:
    """A prometheus_client collector over a snapshot of one outbox and its agents' counts."""

    def __init__(self, outbox: Outbox, counts: list[Counter[str]]) -> None:
        self.outbox, self.counts = outbox, counts
        self._lock = threading.Lock()
        self._snap: dict[str, Any] = {}
        self.refresh(0)

    def refresh(self, now_ms: int) -> None:
        """Take the figures (the agent's loop calls this; scrapes only read the result)."""
        box = self.outbox
        merged: Counter[str] = Counter()
        for c in self.counts:
            merged.update(c)
        snap: dict[str, Any] = {"spooled": dict((k, v) for k, v in merged.items() if k.startswith("cpn.")),
                "collector_errors": {k.removesuffix("_errors"): v for k, v in merged.items()
                                     if k.endswith("_errors")},
                "delivered": box.counts.delivered, "errors": box.counts.errors,
                "rejected": box.counts.rejected, "kafka_errors": box.watch.errors,
                "backlog": box.backlog, "oldest": box.oldest_age_s(now_ms) if now_ms else 0.0,
                "bytes": box.spool.nbytes, "up": 1 if box.watch.up else 0}
        with self._lock:
            self._snap = snap

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            s = dict(self._snap)
        events_in = CounterMetricFamily("surplus_agent_events_in", "Events collected and spooled",
                                        labels=["type"])
        for event_type, n in sorted(s["spooled"].items()):
            events_in.add_metric([event_type], n)
        yield events_in
        yield CounterMetricFamily("surplus_agent_events_out", "Events delivered to Kafka",
                                  value=s["delivered"])
        yield CounterMetricFamily("surplus_agent_delivery_errors", "Delivery reports with an error",
                                  value=s["errors"])
        yield CounterMetricFamily("surplus_agent_events_rejected", "Events Kafka can never take",
                                  value=s["rejected"])
        yield CounterMetricFamily("surplus_agent_kafka_errors", "librdkafka errors", value=s["kafka_errors"])
        failed = CounterMetricFamily("surplus_agent_collector_errors", "Collector turns that failed",
                                     labels=["collector"])
        for name, n in sorted(s["collector_errors"].items()):
            failed.add_metric([name], n)
        yield failed
        yield GaugeMetricFamily("surplus_agent_spool_backlog_events", "Events not yet delivered",
                                value=s["backlog"])
        yield GaugeMetricFamily("surplus_agent_spool_oldest_unsent_age_seconds",
                                "Age of the oldest undelivered event", value=s["oldest"])
        yield GaugeMetricFamily("surplus_agent_spool_bytes", "Bytes in the spool", value=s["bytes"])
        yield GaugeMetricFamily("surplus_agent_broker_up", "1 when the broker is reachable",
                                value=s["up"])


def serve(metrics: Collector, port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve `/metrics` of `metrics` (this agent's, or a worker's) on `port` from a daemon thread;
    return the function that stops it.

    Raises OSError when the port cannot be bound.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    server, thread = start_http_server(port, addr=addr, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
