-- pool_minutes is filled by ClickHouse itself from each capacity sample as it is inserted: one
-- row per whole UTC minute T with time in (T - 3*interval_s, T], i.e. T in [time, time + 3*interval_s).
-- A duplicate sample yields the same rows again (same key), which the snapshot views count once.

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.pool_minutes_from_samples TO {db}.pool_minutes AS
SELECT
    toDateTime(intDiv(m, 1000), 'UTC')                      AS ts,
    dc_id,
    pool_id,
    event_id,
    time                                                    AS sample_time,
    toInt64(devices_online) - toInt64(devices_allocated)    AS idle_devices,
    toInt64(devices_online)                                 AS online_devices,
    toInt64(devices_allocated)                              AS allocated_devices,
    idle_pflops_fp16,
    idle_pflops_fp32,
    idle_pflops_fp64,
    online_pflops_fp16
FROM {db}.capacity_samples
ARRAY JOIN range(
    toUInt64(intDiv(toUnixTimestamp64Milli(time) + 59999, 60000) * 60000),
    toUInt64(toUnixTimestamp64Milli(time) + 3000 * interval_s),
    60000
) AS m;
