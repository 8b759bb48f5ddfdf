-- The SPEC §5 surplus and green relations on the incremental state of migration 020: same
-- names, same columns, exact under SPEC §4, and a question on a range reads that range.
--
-- Minutes of hours that `surplus db rollup` (run by the worker on a timer) has settled are read
-- from the roll-up tables; minutes of the other hours (the current one, hours that late samples
-- touched since) are computed from pool_minutes and pool_days on the fly. An hour is settled
-- when it was rolled up after the last sample that touched it, under the same DC-to-hub map.

CREATE TABLE IF NOT EXISTS {db}.dc_minute_rollup
(
    ts                  DateTime('UTC'),
    dc_id               LowCardinality(String),
    idle_pflops_fp16    Float64,
    idle_pflops_fp32    Float64,
    idle_pflops_fp64    Float64,
    online_pflops_fp16  Float64,
    idle_devices        Int64,
    online_devices      Int64,
    allocated_devices   Int64,
    pools_reporting     UInt64,
    pools_stale         UInt64,
    computed_at         DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, dc_id)
TTL ts + toIntervalDay({minute_retention_days});

-- The hourly roll-ups, kept without limit. hub_hourly_rollup holds a row for every hub of
-- every rolled hour (minutes = 0 where the hub had none), so a newer roll-up replaces them all.
CREATE TABLE IF NOT EXISTS {db}.national_hourly_rollup
(
    hour                    DateTime('UTC'),
    minutes                 UInt64,
    idle_pflops_fp16_avg    Float64,
    idle_pflops_fp16_min    Float64,
    idle_pflops_fp16_max    Float64,
    idle_pflops_fp32_avg    Float64,
    idle_pflops_fp32_min    Float64,
    idle_pflops_fp32_max    Float64,
    idle_pflops_fp64_avg    Float64,
    idle_pflops_fp64_min    Float64,
    idle_pflops_fp64_max    Float64,
    online_pflops_fp16_avg  Float64,
    idle_devices_avg        Float64,
    computed_at             DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYear(hour)
ORDER BY hour;

CREATE TABLE IF NOT EXISTS {db}.hub_hourly_rollup
(
    hour                    DateTime('UTC'),
    hub                     LowCardinality(String),
    minutes                 UInt64,
    idle_pflops_fp16_avg    Float64,
    idle_pflops_fp16_min    Float64,
    idle_pflops_fp16_max    Float64,
    idle_pflops_fp32_avg    Float64,
    idle_pflops_fp32_min    Float64,
    idle_pflops_fp32_max    Float64,
    idle_pflops_fp64_avg    Float64,
    idle_pflops_fp64_min    Float64,
    idle_pflops_fp64_max    Float64,
    online_pflops_fp16_avg  Float64,
    idle_devices_avg        Float64,
    computed_at             DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYear(hour)
ORDER BY (hour, hub);

CREATE TABLE IF NOT EXISTS {db}.dc_hourly_rollup
(
    hour                    DateTime('UTC'),
    dc_id                   LowCardinality(String),
    minutes                 UInt64,
    idle_pflops_fp16_avg    Float64,
    idle_pflops_fp16_min    Float64,
    idle_pflops_fp16_max    Float64,
    idle_pflops_fp32_avg    Float64,
    idle_pflops_fp32_min    Float64,
    idle_pflops_fp32_max    Float64,
    idle_pflops_fp64_avg    Float64,
    idle_pflops_fp64_min    Float64,
    idle_pflops_fp64_max    Float64,
    online_pflops_fp16_avg  Float64,
    idle_devices_avg        Float64,
    computed_at             DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, dc_id);

-- Which hours a roll-up settled: when its read began (less a minute's margin for inserts in
-- flight) and the DC-to-hub map it used.
CREATE TABLE IF NOT EXISTS {db}.surplus_rolled_hours
(
    hour           DateTime('UTC'),
    computed_from  DateTime64(6, 'UTC'),
    hub_map        UInt64
)
ENGINE = ReplacingMergeTree(computed_from)
ORDER BY hour;

-- A fingerprint of the DC-to-hub map (a re-registration under another hub changes it).
CREATE VIEW IF NOT EXISTS {db}.surplus_hub_map AS
SELECT groupBitXor(cityHash64(dc_id, if(hub = '', 'none', hub))) AS hub_map
FROM (SELECT dc_id, argMax(hub, (time, event_id)) AS hub FROM {db}.registrations GROUP BY dc_id);

-- The hours whose minutes are computed on the fly: touched since their last roll-up, or rolled
-- up under another hub map (while their minute state is kept).
CREATE VIEW IF NOT EXISTS {db}.surplus_unsettled_hours AS
SELECT hour
FROM
(
    SELECT hour, touched_at, toDateTime64(0, 6, 'UTC') AS computed_from, toUInt64(0) AS hub_map
    FROM {db}.surplus_touched_hours
    UNION ALL
    SELECT hour, toDateTime64(0, 6, 'UTC'), computed_from, hub_map FROM {db}.surplus_rolled_hours
)
GROUP BY hour
HAVING max(computed_from) <= max(touched_at)
    OR (argMax(hub_map, computed_from) != (SELECT hub_map FROM {db}.surplus_hub_map)
        AND hour >= now() - toIntervalDay({minute_retention_days}));

-- Per (minute, pool): the pool's state at every snapshot minute where it is known (SPEC §4):
-- reporting (1) with the figures of its latest sample standing for the minute, or stale (0).
-- Reads the minutes asked (a filter on ts reaches pool_minutes) and pool_days.
CREATE VIEW IF NOT EXISTS {db}.pool_minute_known AS
SELECT
    _k.ts                                       AS ts,
    _k.dc_id                                    AS dc_id,
    _k.pool_id                                  AS pool_id,
    toUInt8(_s.reporting)                       AS reporting,
    tupleElement(_s.v, 1)                       AS idle_devices,
    tupleElement(_s.v, 2)                       AS online_devices,
    tupleElement(_s.v, 3)                       AS allocated_devices,
    tupleElement(_s.v, 4)                       AS idle_pflops_fp16,
    tupleElement(_s.v, 5)                       AS idle_pflops_fp32,
    tupleElement(_s.v, 6)                       AS idle_pflops_fp64,
    tupleElement(_s.v, 7)                       AS online_pflops_fp16
FROM
(
    SELECT _m.ts AS ts, _p.dc_id AS dc_id, _p.pool_id AS pool_id
    FROM (SELECT ts, d FROM (SELECT DISTINCT ts FROM {db}.pool_minutes)
          ARRAY JOIN [toDate(ts), toDate(ts) - 1] AS d) AS _m
    INNER JOIN
    (
        SELECT day, dc_id, pool_id, min(first_time) AS first_time, max(last_time) AS last_time
        FROM {db}.pool_days GROUP BY day, dc_id, pool_id
    ) AS _p ON _p.day = _m.d
    WHERE if(_p.day = toDate(_m.ts), _p.first_time <= _m.ts, _p.last_time > _m.ts - toIntervalSecond(86400))
    GROUP BY ts, dc_id, pool_id
) AS _k
LEFT JOIN
(
    SELECT ts, dc_id, pool_id, 1 AS reporting,
        argMax((idle_devices, online_devices, allocated_devices, idle_pflops_fp16, idle_pflops_fp32,
                idle_pflops_fp64, online_pflops_fp16), (sample_time, event_id)) AS v
    FROM {db}.pool_minutes GROUP BY ts, dc_id, pool_id
) AS _s ON _s.ts = _k.ts AND _s.dc_id = _k.dc_id AND _s.pool_id = _k.pool_id;

-- Per (minute, DC) over the unsettled hours only: what a roll-up writes and what the relations
-- read for hours not rolled up. Rows with no reporting pool are kept (their stale pools count
-- at hub and national level).
CREATE VIEW IF NOT EXISTS {db}.dc_minute_live AS
WITH (SELECT ifNull(minOrNull(hour), toDateTime(4102444800, 'UTC')) FROM {db}.surplus_unsettled_hours) AS _from
SELECT
    _k.ts AS ts,
    _k.dc_id AS dc_id,
    sum(tupleElement(_s.v, 4))             AS idle_pflops_fp16,
    sum(tupleElement(_s.v, 5))             AS idle_pflops_fp32,
    sum(tupleElement(_s.v, 6))             AS idle_pflops_fp64,
    sum(tupleElement(_s.v, 7))             AS online_pflops_fp16,
    sum(tupleElement(_s.v, 1))             AS idle_devices,
    sum(tupleElement(_s.v, 2))             AS online_devices,
    sum(tupleElement(_s.v, 3))             AS allocated_devices,
    toUInt64(sum(_s.reporting))            AS pools_reporting,
    toUInt64(count() - sum(_s.reporting))  AS pools_stale
FROM
(
    SELECT _m.ts AS ts, _p.dc_id AS dc_id, _p.pool_id AS pool_id
    FROM (SELECT ts, d FROM (SELECT DISTINCT ts FROM {db}.pool_minutes
                             WHERE ts >= _from AND toStartOfHour(ts) IN (SELECT hour FROM {db}.surplus_unsettled_hours))
          ARRAY JOIN [toDate(ts), toDate(ts) - 1] AS d) AS _m
    INNER JOIN
    (
        SELECT day, dc_id, pool_id, min(first_time) AS first_time, max(last_time) AS last_time
        FROM {db}.pool_days WHERE day >= toDate(_from) - 1 GROUP BY day, dc_id, pool_id
    ) AS _p ON _p.day = _m.d
    WHERE if(_p.day = toDate(_m.ts), _p.first_time <= _m.ts, _p.last_time > _m.ts - toIntervalSecond(86400))
    GROUP BY ts, dc_id, pool_id
) AS _k
LEFT JOIN
(
    SELECT ts, dc_id, pool_id, toUInt8(1) AS reporting,
        argMax((idle_devices, online_devices, allocated_devices, idle_pflops_fp16, idle_pflops_fp32,
                idle_pflops_fp64, online_pflops_fp16), (sample_time, event_id)) AS v
    FROM {db}.pool_minutes
    WHERE ts >= _from AND toStartOfHour(ts) IN (SELECT hour FROM {db}.surplus_unsettled_hours)
    GROUP BY ts, dc_id, pool_id
) AS _s ON _s.ts = _k.ts AND _s.dc_id = _k.dc_id AND _s.pool_id = _k.pool_id
GROUP BY ts, dc_id;

-- Per (minute, DC), every hour: rolled-up rows of settled hours, computed rows of the others.
CREATE VIEW IF NOT EXISTS {db}.dc_minute_all AS
SELECT ts, dc_id, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64, online_pflops_fp16,
       idle_devices, online_devices, allocated_devices, pools_reporting, pools_stale
FROM {db}.dc_minute_rollup FINAL
WHERE toStartOfHour(ts) NOT IN (SELECT hour FROM {db}.surplus_unsettled_hours)
UNION ALL
SELECT ts, dc_id, idle_pflops_fp16, idle_pflops_fp32, idle_pflops_fp64, online_pflops_fp16,
       idle_devices, online_devices, allocated_devices, pools_reporting, pools_stale
FROM {db}.dc_minute_live;

DROP VIEW IF EXISTS {db}.national_surplus_minute;
DROP VIEW IF EXISTS {db}.hub_surplus_minute;
DROP VIEW IF EXISTS {db}.dc_surplus_minute;
DROP VIEW IF EXISTS {db}.pool_minute_state;
DROP VIEW IF EXISTS {db}.pool_known_spans;

-- Per (minute, known pool), with the DC's hub and province (what `surplus report` lists as stale).
CREATE VIEW IF NOT EXISTS {db}.pool_minute_state AS
SELECT
    _k.ts AS ts, _k.dc_id AS dc_id, if(_d.hub = '', 'none', _d.hub) AS hub, _d.province AS province,
    _k.pool_id AS pool_id, _k.reporting AS reporting,
    _k.idle_devices AS idle_devices, _k.online_devices AS online_devices, _k.allocated_devices AS allocated_devices,
    _k.idle_pflops_fp16 AS idle_pflops_fp16, _k.idle_pflops_fp32 AS idle_pflops_fp32,
    _k.idle_pflops_fp64 AS idle_pflops_fp64, _k.online_pflops_fp16 AS online_pflops_fp16
FROM {db}.pool_minute_known AS _k
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _k.dc_id;

CREATE VIEW IF NOT EXISTS {db}.dc_surplus_minute AS
SELECT
    _a.ts AS ts, _a.dc_id AS dc_id, if(_d.hub = '', 'none', _d.hub) AS hub, _d.province AS province,
    _a.idle_pflops_fp16 AS idle_pflops_fp16, _a.idle_pflops_fp32 AS idle_pflops_fp32,
    _a.idle_pflops_fp64 AS idle_pflops_fp64, _a.online_pflops_fp16 AS online_pflops_fp16,
    _a.idle_devices AS idle_devices, _a.online_devices AS online_devices,
    _a.allocated_devices AS allocated_devices, _a.pools_reporting AS pools_reporting,
    _a.pools_stale AS pools_stale
FROM {db}.dc_minute_all AS _a
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _a.dc_id
WHERE _a.pools_reporting > 0;

CREATE VIEW IF NOT EXISTS {db}.hub_surplus_minute AS
SELECT
    _a.ts AS ts, if(_d.hub = '', 'none', _d.hub) AS hub,
    sum(_a.idle_pflops_fp16)    AS idle_pflops_fp16,
    sum(_a.idle_pflops_fp32)    AS idle_pflops_fp32,
    sum(_a.idle_pflops_fp64)    AS idle_pflops_fp64,
    sum(_a.online_pflops_fp16)  AS online_pflops_fp16,
    sum(_a.idle_devices)        AS idle_devices,
    sum(_a.online_devices)      AS online_devices,
    sum(_a.allocated_devices)   AS allocated_devices,
    sum(_a.pools_reporting)     AS pools_reporting,
    sum(_a.pools_stale)         AS pools_stale
FROM {db}.dc_minute_all AS _a
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _a.dc_id
GROUP BY ts, hub
HAVING pools_reporting > 0;

CREATE VIEW IF NOT EXISTS {db}.national_surplus_minute AS
SELECT
    ts,
    sum(idle_pflops_fp16)    AS idle_pflops_fp16,
    sum(idle_pflops_fp32)    AS idle_pflops_fp32,
    sum(idle_pflops_fp64)    AS idle_pflops_fp64,
    sum(online_pflops_fp16)  AS online_pflops_fp16,
    sum(idle_devices)        AS idle_devices,
    sum(online_devices)      AS online_devices,
    sum(allocated_devices)   AS allocated_devices,
    sum(pools_reporting)     AS pools_reporting,
    sum(pools_stale)         AS pools_stale
FROM {db}.dc_minute_all
GROUP BY ts
HAVING pools_reporting > 0;

-- The hourly relations (SPEC §5): over the hour's minute rows; rolled-up rows of settled
-- hours (kept when the minutes are gone), computed rows of the others.
CREATE VIEW IF NOT EXISTS {db}.national_surplus_hourly AS
SELECT hour, minutes, idle_pflops_fp16_avg, idle_pflops_fp16_min, idle_pflops_fp16_max,
       idle_pflops_fp32_avg, idle_pflops_fp32_min, idle_pflops_fp32_max,
       idle_pflops_fp64_avg, idle_pflops_fp64_min, idle_pflops_fp64_max,
       online_pflops_fp16_avg, idle_devices_avg
FROM {db}.national_hourly_rollup FINAL
WHERE hour NOT IN (SELECT hour FROM {db}.surplus_unsettled_hours)
UNION ALL
SELECT toStartOfHour(ts) AS hour, count() AS minutes,
       avg(idle_pflops_fp16), min(idle_pflops_fp16), max(idle_pflops_fp16),
       avg(idle_pflops_fp32), min(idle_pflops_fp32), max(idle_pflops_fp32),
       avg(idle_pflops_fp64), min(idle_pflops_fp64), max(idle_pflops_fp64),
       avg(online_pflops_fp16), avg(idle_devices)
FROM
(
    SELECT ts, sum(idle_pflops_fp16) AS idle_pflops_fp16, sum(idle_pflops_fp32) AS idle_pflops_fp32,
           sum(idle_pflops_fp64) AS idle_pflops_fp64, sum(online_pflops_fp16) AS online_pflops_fp16,
           sum(idle_devices) AS idle_devices, sum(pools_reporting) AS pools_reporting
    FROM {db}.dc_minute_live GROUP BY ts HAVING pools_reporting > 0
)
GROUP BY hour;

CREATE VIEW IF NOT EXISTS {db}.hub_surplus_hourly AS
SELECT hour, hub, minutes, idle_pflops_fp16_avg, idle_pflops_fp16_min, idle_pflops_fp16_max,
       idle_pflops_fp32_avg, idle_pflops_fp32_min, idle_pflops_fp32_max,
       idle_pflops_fp64_avg, idle_pflops_fp64_min, idle_pflops_fp64_max,
       online_pflops_fp16_avg, idle_devices_avg
FROM {db}.hub_hourly_rollup FINAL
WHERE minutes > 0 AND hour NOT IN (SELECT hour FROM {db}.surplus_unsettled_hours)
UNION ALL
SELECT toStartOfHour(ts) AS hour, hub, count() AS minutes,
       avg(idle_pflops_fp16), min(idle_pflops_fp16), max(idle_pflops_fp16),
       avg(idle_pflops_fp32), min(idle_pflops_fp32), max(idle_pflops_fp32),
       avg(idle_pflops_fp64), min(idle_pflops_fp64), max(idle_pflops_fp64),
       avg(online_pflops_fp16), avg(idle_devices)
FROM
(
    SELECT _l.ts AS ts, if(_d.hub = '', 'none', _d.hub) AS hub,
           sum(_l.idle_pflops_fp16) AS idle_pflops_fp16, sum(_l.idle_pflops_fp32) AS idle_pflops_fp32,
           sum(_l.idle_pflops_fp64) AS idle_pflops_fp64, sum(_l.online_pflops_fp16) AS online_pflops_fp16,
           sum(_l.idle_devices) AS idle_devices, sum(_l.pools_reporting) AS pools_reporting
    FROM {db}.dc_minute_live AS _l LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _l.dc_id
    GROUP BY ts, hub HAVING pools_reporting > 0
)
GROUP BY hour, hub;

CREATE VIEW IF NOT EXISTS {db}.dc_surplus_hourly AS
SELECT _h.hour AS hour, _h.dc_id AS dc_id, if(_d.hub = '', 'none', _d.hub) AS hub, _d.province AS province,
       _h.minutes AS minutes,
       _h.idle_pflops_fp16_avg AS idle_pflops_fp16_avg, _h.idle_pflops_fp16_min AS idle_pflops_fp16_min,
       _h.idle_pflops_fp16_max AS idle_pflops_fp16_max, _h.idle_pflops_fp32_avg AS idle_pflops_fp32_avg,
       _h.idle_pflops_fp32_min AS idle_pflops_fp32_min, _h.idle_pflops_fp32_max AS idle_pflops_fp32_max,
       _h.idle_pflops_fp64_avg AS idle_pflops_fp64_avg, _h.idle_pflops_fp64_min AS idle_pflops_fp64_min,
       _h.idle_pflops_fp64_max AS idle_pflops_fp64_max, _h.online_pflops_fp16_avg AS online_pflops_fp16_avg,
       _h.idle_devices_avg AS idle_devices_avg
FROM
(
    SELECT hour, dc_id, minutes, idle_pflops_fp16_avg, idle_pflops_fp16_min, idle_pflops_fp16_max,
           idle_pflops_fp32_avg, idle_pflops_fp32_min, idle_pflops_fp32_max,
           idle_pflops_fp64_avg, idle_pflops_fp64_min, idle_pflops_fp64_max,
           online_pflops_fp16_avg, idle_devices_avg
    FROM {db}.dc_hourly_rollup FINAL
    WHERE hour NOT IN (SELECT hour FROM {db}.surplus_unsettled_hours)
    UNION ALL
    SELECT toStartOfHour(ts) AS hour, dc_id, count() AS minutes,
           avg(idle_pflops_fp16), min(idle_pflops_fp16), max(idle_pflops_fp16),
           avg(idle_pflops_fp32), min(idle_pflops_fp32), max(idle_pflops_fp32),
           avg(idle_pflops_fp64), min(idle_pflops_fp64), max(idle_pflops_fp64),
           avg(online_pflops_fp16), avg(idle_devices)
    FROM {db}.dc_minute_live WHERE pools_reporting > 0
    GROUP BY hour, dc_id
) AS _h
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _h.dc_id;

-- Green energy per hour (SPEC §4) on power_hourly_samples: the hours asked, each sample once.
DROP VIEW IF EXISTS {db}.national_green_hourly;
DROP VIEW IF EXISTS {db}.hub_green_hourly;
DROP VIEW IF EXISTS {db}.dc_green_hourly;

CREATE VIEW IF NOT EXISTS {db}.dc_green_hourly AS
SELECT
    _p.hour                                    AS hour,
    _p.dc_id                                   AS dc_id,
    if(_d.hub = '', 'none', _d.hub)             AS hub,
    _d.province                                AS province,
    sum(_p.facility_energy_kwh)                AS facility_kwh,
    sum(_p.it_energy_kwh)                      AS it_kwh,
    sum(_p.green_energy_kwh)                   AS green_kwh,
    sum(_p.carbon_emission_kg)                 AS carbon_kg,
    if(facility_kwh > 0, green_kwh / facility_kwh, NULL) AS green_share,
    if(it_kwh > 0, facility_kwh / it_kwh, NULL)          AS pue
FROM {db}.power_hourly_samples AS _p FINAL
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _p.dc_id
GROUP BY hour, dc_id, hub, province;

CREATE VIEW IF NOT EXISTS {db}.hub_green_hourly AS
SELECT
    hour, hub,
    sum(facility_kwh)  AS facility_kwh,
    sum(it_kwh)        AS it_kwh,
    sum(green_kwh)     AS green_kwh,
    sum(carbon_kg)     AS carbon_kg,
    if(facility_kwh > 0, green_kwh / facility_kwh, NULL) AS green_share,
    if(it_kwh > 0, facility_kwh / it_kwh, NULL)          AS pue
FROM {db}.dc_green_hourly
GROUP BY hour, hub;

CREATE VIEW IF NOT EXISTS {db}.national_green_hourly AS
SELECT
    hour,
    sum(facility_kwh)  AS facility_kwh,
    sum(it_kwh)        AS it_kwh,
    sum(green_kwh)     AS green_kwh,
    sum(carbon_kg)     AS carbon_kg,
    if(facility_kwh > 0, green_kwh / facility_kwh, NULL) AS green_share,
    if(it_kwh > 0, facility_kwh / it_kwh, NULL)          AS pue
FROM {db}.dc_green_hourly
GROUP BY hour;
