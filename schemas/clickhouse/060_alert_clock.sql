-- The alert evaluator's stream clock (docs/alerts.md, "Event time"), kept per `instance` so that
-- a restarted or a `surplus alerts run --once` evaluator goes on from where the last one was:
-- the newest event time it saw, the wall time that moved last, and the clock itself.

CREATE TABLE IF NOT EXISTS {db}.alert_clock
(
    instance           LowCardinality(String),
    newest             Nullable(DateTime64(3, 'UTC')),
    newest_changed_at  Nullable(DateTime64(3, 'UTC')),
    clock              Nullable(DateTime64(3, 'UTC')),
    evaluator          String,
    updated_at         DateTime64(3, 'UTC'),
    version            UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY instance;
