-- Accepted events, one row per event identity (source + id = dc_id + event_id).
-- ReplacingMergeTree: a duplicate or a replayed event writes the same key again and counts once
-- under FINAL / GROUP BY. Duplicates carry the same `time`, so they share a partition.

CREATE TABLE IF NOT EXISTS {db}.registrations
(
    dc_id        LowCardinality(String),
    event_id     String,
    time         DateTime64(3, 'UTC'),
    name         String,
    operator     String,
    province     LowCardinality(String),
    hub          LowCardinality(String),
    cluster      Nullable(String),
    lat          Float64,
    lon          Float64,
    racks_total  UInt32,
    received_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dc_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.capacity_samples
(
    dc_id               LowCardinality(String),
    pool_id             String,
    event_id            String,
    time                DateTime64(3, 'UTC'),
    interval_s          UInt32,
    device_model        LowCardinality(String),
    devices_total       UInt32,
    devices_online      UInt32,
    devices_allocated   UInt32,
    busy_ratio          Nullable(Float64),
    peak_tflops_fp16    Float64,
    peak_tflops_fp32    Float64,
    peak_tflops_fp64    Float64,
    idle_pflops_fp16    Float64,
    idle_pflops_fp32    Float64,
    idle_pflops_fp64    Float64,
    online_pflops_fp16  Float64,
    online_pflops_fp32  Float64,
    online_pflops_fp64  Float64,
    received_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (dc_id, event_id);

-- One row per (capacity sample, whole UTC minute T it can stand for): the minutes with
-- time in (T - 3*interval_s, T], i.e. T in [time, time + 3*interval_s). Written by the worker
-- with the sample; the snapshot views take per pool and minute the latest such sample.
CREATE TABLE IF NOT EXISTS {db}.pool_minutes
(
    ts                  DateTime('UTC'),
    dc_id               LowCardinality(String),
    pool_id             String,
    event_id            String,
    sample_time         DateTime64(3, 'UTC'),
    idle_devices        Int64,
    online_devices      Int64,
    allocated_devices   Int64,
    idle_pflops_fp16    Float64,
    idle_pflops_fp32    Float64,
    idle_pflops_fp64    Float64,
    online_pflops_fp16  Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, dc_id, pool_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.power_samples
(
    dc_id                    LowCardinality(String),
    event_id                 String,
    time                     DateTime64(3, 'UTC'),
    interval_s               UInt32,
    it_energy_kwh            Float64,
    facility_energy_kwh      Float64,
    grid_kwh                 Float64,
    green_contract_kwh       Float64,
    onsite_renewable_kwh     Float64,
    grid_renewable_share     Float64,
    grid_emission_g_per_kwh  Float64,
    green_energy_kwh         Float64,
    carbon_emission_kg       Float64,
    received_at              DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (dc_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.heartbeats
(
    dc_id                 LowCardinality(String),
    event_id              String,
    time                  DateTime64(3, 'UTC'),
    agent_version         String,
    boot_id               String,
    uptime_s              Float64,
    spool_backlog_events  UInt64,
    spool_oldest_age_s    Float64,
    received_at           DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (dc_id, event_id);

-- Every accepted job event (counter regressions excluded), for reconciliation.
CREATE TABLE IF NOT EXISTS {db}.job_events
(
    dc_id                 LowCardinality(String),
    event_id              String,
    time                  DateTime64(3, 'UTC'),
    job_id                String,
    tenant_id             LowCardinality(String),
    pool_id               String,
    device_model          LowCardinality(String),
    devices               UInt32,
    phase                 LowCardinality(String),
    seq                   UInt64,
    device_seconds_total  Float64,
    energy_kwh_total      Float64,
    status                Nullable(String),
    received_at           DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dc_id, event_id);

-- Rejected messages, keyed by their position: a replay writes the same key again.
-- Analysts read the view {db}.deadletter (SPEC §5), which counts each position once.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at  DateTime64(3, 'UTC'),
    topic        LowCardinality(String),
    partition    UInt32,
    offset       UInt64,
    reason       LowCardinality(String),
    detail       String,
    payload      String
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset);
