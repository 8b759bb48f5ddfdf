-- Incremental state for the SPEC §5 surplus relations, kept by ClickHouse as samples are
-- inserted, so that a question on a time range reads that range (plus a day of look-back):
--   pool_minutes      (migration 009) per (whole UTC minute, sample): the samples standing for
--                     that minute; the relations take per pool the latest by (time, event id), so
--                     a duplicate changes nothing. Plain rows: an argMax state of tuples per row
--                     cost ten times the insert (measured), this costs a GROUP BY on the range read;
--   pool_days         per (pool, UTC day): its earliest and latest sample time that day.
--                     A pool is *known* at minute T (SPEC §4: a sample in (T - 24 h, T]) exactly
--                     when its earliest sample of T's day is at or before T, or its latest sample of
--                     the previous day is after T - 24 h;
--   surplus_touched_hours  per hour, when a sample last changed a minute of it (reporting in
--                     [time, time + 3*interval_s], known-ness in [time, time + 24 h]).
-- Raw samples are kept SURPLUS_RAW_RETENTION_DAYS ({raw_retention_days}) days, minute state
-- {minute_retention_days} (SPEC §5: 400; the test fixtures, dated in the past, keep theirs).

CREATE TABLE IF NOT EXISTS {db}.pool_days
(
    day         Date,
    dc_id       LowCardinality(String),
    pool_id     String,
    first_time  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_time   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, dc_id, pool_id)
TTL day + toIntervalDay({minute_retention_days} + 1);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.pool_days_from_samples TO {db}.pool_days AS
SELECT toDate(time) AS day, dc_id, pool_id, min(time) AS first_time, max(time) AS last_time
FROM {db}.capacity_samples
GROUP BY day, dc_id, pool_id;

CREATE TABLE IF NOT EXISTS {db}.surplus_touched_hours
(
    hour        DateTime('UTC'),
    touched_at  SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.surplus_touched_from_samples TO {db}.surplus_touched_hours AS
SELECT toDateTime(h, 'UTC') AS hour, max(now64(6, 'UTC')) AS touched_at
FROM (SELECT DISTINCT toUInt32(toStartOfHour(time)) AS h0 FROM {db}.capacity_samples)
ARRAY JOIN range(h0, h0 + 86401, 3600) AS h
GROUP BY hour;

-- Power samples by hour, one row per event identity (a duplicate replaces itself), kept
-- without limit: the green hourly relations read the hours asked and nothing else.
CREATE TABLE IF NOT EXISTS {db}.power_hourly_samples
(
    hour                 DateTime('UTC'),
    dc_id                LowCardinality(String),
    event_id             String,
    facility_energy_kwh  Float64,
    it_energy_kwh        Float64,
    green_energy_kwh     Float64,
    carbon_emission_kg   Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, dc_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.power_hourly_from_samples TO {db}.power_hourly_samples AS
SELECT toStartOfHour(toDateTime(time, 'UTC')) AS hour, dc_id, event_id,
       facility_energy_kwh, it_energy_kwh, green_energy_kwh, carbon_emission_kg
FROM {db}.power_samples;

-- A store migrated before this file: its samples go through the same definitions once.
INSERT INTO {db}.pool_days
SELECT toDate(time) AS day, dc_id, pool_id, min(time), max(time)
FROM {db}.capacity_samples
GROUP BY day, dc_id, pool_id;

INSERT INTO {db}.surplus_touched_hours
SELECT toDateTime(h, 'UTC') AS hour, max(now64(6, 'UTC'))
FROM (SELECT DISTINCT toUInt32(toStartOfHour(time)) AS h0 FROM {db}.capacity_samples)
ARRAY JOIN range(h0, h0 + 86401, 3600) AS h
GROUP BY hour;

INSERT INTO {db}.power_hourly_samples
SELECT toStartOfHour(toDateTime(time, 'UTC')), dc_id, event_id,
       facility_energy_kwh, it_energy_kwh, green_energy_kwh, carbon_emission_kg
FROM {db}.power_samples FINAL;

-- Raw retention (SPEC §5).
ALTER TABLE {db}.capacity_samples MODIFY TTL toDateTime(time) + toIntervalDay({raw_retention_days});
ALTER TABLE {db}.power_samples MODIFY TTL toDateTime(time) + toIntervalDay({raw_retention_days});
ALTER TABLE {db}.heartbeats MODIFY TTL toDateTime(time) + toIntervalDay({raw_retention_days});
ALTER TABLE {db}.pool_minutes MODIFY TTL ts + toIntervalDay({minute_retention_days});
