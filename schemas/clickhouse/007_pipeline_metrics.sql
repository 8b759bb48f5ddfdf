-- Self-monitoring of the stream workers: counts in, out and rejected by reason, write latency,
-- consumer lag; one row per (flush, metric, label). Kept 30 days.

CREATE TABLE IF NOT EXISTS {db}.pipeline_metrics
(
    ts      DateTime64(3, 'UTC'),
    worker  LowCardinality(String),
    metric  LowCardinality(String),
    label   String,
    value   Float64
)
ENGINE = MergeTree
ORDER BY (metric, ts)
TTL toDateTime(ts) + toIntervalDay(30);
