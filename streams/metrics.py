"""The stream worker's Prometheus metrics (`/metrics`, SPEC §7) when SURPLUS_METRICS_PORT is set. I/O (HTTP).

Served the way the agent serves its own (agents/metrics.py: prometheus_client's HTTP server on a
registry of this process only). The figures are the handler's counts (streams/worker.py
`Metrics`), which the handler updates once per batch; a scrape reads them from the server's
thread and never touches the hot path:

| metric | type | what |
| --- | --- | --- |
| `surplus_worker_events_in_total` | counter | Kafka records read (every batch, accepted or not) |
| `surplus_worker_events_out_total{type}` | counter | events accepted and written, by CloudEvents type |
| `surplus_worker_events_rejected_total{reason}` | counter | events sent to the dead letters, by SPEC §3 reason |
| `surplus_worker_rows_written_total` | counter | rows written to ClickHouse (all tables) |
| `surplus_worker_batches_total` | counter | batches written (offsets returned for commit) |
| `surplus_worker_batch_write_seconds` | histogram | time to write one batch's rows to ClickHouse |
| `surplus_worker_consumer_lag{topic,partition}` | gauge | messages behind the high watermark, at its last batch |
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from streams.worker import Metrics


class WorkerMetrics:
    """A prometheus_client collector over one handler's `Metrics` (read at scrape time)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        # copies first: the handler's loop may update the counts while the server thread reads
        accepted, rejected, lag = dict(m.accepted), dict(m.rejected), dict(m.lag)
        buckets, write_sum = list(m.write_buckets), m.write_s_sum
        yield CounterMetricFamily("surplus_worker_events_in", "Kafka records read", value=m.events_in)
        out = CounterMetricFamily("surplus_worker_events_out", "Events accepted and written, by type",
                                  labels=["type"])
        for event_type, n in sorted(accepted.items()):
            out.add_metric([event_type], n)
        yield out
        rejects = CounterMetricFamily("surplus_worker_events_rejected",
                                      "Events sent to the dead letters, by reason", labels=["reason"])
        for reason, n in sorted(rejected.items()):
            rejects.add_metric([reason], n)
        yield rejects
        yield CounterMetricFamily("surplus_worker_rows_written", "Rows written to ClickHouse",
                                  value=m.rows_out)
        yield CounterMetricFamily("surplus_worker_batches", "Batches written", value=m.batches)
        cumulative, running = [], 0
        for bound, n in zip((*m.WRITE_BUCKETS_S, float("inf")), buckets, strict=True):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily("surplus_worker_batch_write_seconds",
                                    "Time to write one batch's rows to ClickHouse",
                                    buckets=cumulative, sum_value=write_sum)
        gauge = GaugeMetricFamily("surplus_worker_consumer_lag",
                                  "Messages behind the high watermark, as of the partition's last batch",
                                  labels=["topic", "partition"])
        for where, n in sorted(lag.items()):
            topic, _, partition = where.rpartition("/")
            gauge.add_metric([topic, partition], n)
        yield gauge
