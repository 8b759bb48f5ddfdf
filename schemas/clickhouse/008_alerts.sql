-- Alerts (SPEC §6, docs/alerts.md): the state that survives a worker restart (alerts and
-- notification groups), every delivery attempt, and the notifications no attempt delivered,
-- kept for `surplus alerts resend`. `instance` separates independent alert engines.

CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    instance      LowCardinality(String),
    fingerprint   String,
    rule_id       String,
    subject       String,
    alertname     LowCardinality(String),
    status        LowCardinality(String),
    labels        Map(String, String),
    annotations   Map(String, String),
    receivers     Array(String),
    active_since  DateTime64(3, 'UTC'),
    starts_at     DateTime64(3, 'UTC'),
    ends_at       Nullable(DateTime64(3, 'UTC')),
    last_true_at  DateTime64(3, 'UTC'),
    deleted       UInt8,
    updated_at    DateTime64(3, 'UTC'),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (instance, fingerprint);

CREATE TABLE IF NOT EXISTS {db}.alert_groups
(
    instance      LowCardinality(String),
    receiver      LowCardinality(String),
    group_key     String,
    group_labels  Map(String, String),
    first_at      DateTime64(3, 'UTC'),
    last_sent_at  Nullable(DateTime64(3, 'UTC')),
    notified      Array(String),
    deleted       UInt8,
    updated_at    DateTime64(3, 'UTC'),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (instance, receiver, group_key);

CREATE TABLE IF NOT EXISTS {db}.alert_notifications
(
    ts               DateTime64(3, 'UTC'),
    instance         LowCardinality(String),
    notification_id  String,
    receiver         LowCardinality(String),
    group_key        String,
    status           LowCardinality(String),
    attempt          UInt16,
    http_status      UInt16,
    latency_ms       Float64,
    outcome          LowCardinality(String),
    error            String
)
ENGINE = MergeTree
ORDER BY (receiver, ts)
TTL toDateTime(ts) + toIntervalDay(90);

CREATE TABLE IF NOT EXISTS {db}.alert_undelivered
(
    notification_id  String,
    instance         LowCardinality(String),
    receiver         LowCardinality(String),
    group_key        String,
    status           LowCardinality(String),
    alerts           UInt32,
    body             String,
    created_at       DateTime64(3, 'UTC'),
    attempts         UInt32,
    last_error       String,
    delivered        UInt8,
    delivered_at     Nullable(DateTime64(3, 'UTC')),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY notification_id;
