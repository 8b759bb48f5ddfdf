-- Surplus snapshots per whole UTC minute (SPEC §4): per pool its latest capacity sample with
-- time in (T - 3*interval_s, T] (rows of pool_minutes); a pool that reported in the 24 h before
-- T without such a sample is stale. A row exists for T when at least one pool is reporting.

-- Per (minute, pool): the latest sample that stands for that minute.
CREATE VIEW IF NOT EXISTS {db}.pool_minute_latest AS
SELECT
    ts,
    dc_id,
    pool_id,
    argMax(idle_devices, (sample_time, event_id))       AS idle_devices,
    argMax(online_devices, (sample_time, event_id))     AS online_devices,
    argMax(allocated_devices, (sample_time, event_id))  AS allocated_devices,
    argMax(idle_pflops_fp16, (sample_time, event_id))   AS idle_pflops_fp16,
    argMax(idle_pflops_fp32, (sample_time, event_id))   AS idle_pflops_fp32,
    argMax(idle_pflops_fp64, (sample_time, event_id))   AS idle_pflops_fp64,
    argMax(online_pflops_fp16, (sample_time, event_id)) AS online_pflops_fp16,
    toUInt8(1)                                          AS reporting
FROM {db}.pool_minutes
GROUP BY ts, dc_id, pool_id;

-- Per pool, the spans in which it counts as known: a sample at t makes the pool known for
-- T in [t, t + 24 h); consecutive samples less than 24 h apart join one span.
CREATE VIEW IF NOT EXISTS {db}.pool_known_spans AS
SELECT
    dc_id,
    pool_id,
    min(time)                              AS span_start,
    max(time) + toIntervalSecond(86400)    AS span_end
FROM
(
    SELECT
        dc_id,
        pool_id,
        time,
        sum(opens) OVER (PARTITION BY dc_id, pool_id ORDER BY time ROWS UNBOUNDED PRECEDING) AS span
    FROM
    (
        SELECT
            dc_id,
            pool_id,
            time,
            toUInt64(toUnixTimestamp64Milli(time) - lagInFrame(toUnixTimestamp64Milli(time), 1, toInt64(0))
                OVER (PARTITION BY dc_id, pool_id ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
                >= 86400000) AS opens
        FROM (SELECT DISTINCT dc_id, pool_id, time FROM {db}.capacity_samples)
    )
)
GROUP BY dc_id, pool_id, span;

-- Per (snapshot minute, known pool): reporting (1) with its figures, or stale (0).
CREATE VIEW IF NOT EXISTS {db}.pool_minute_state AS
SELECT
    _k.ts                   AS ts,
    _k.dc_id                AS dc_id,
    if(_d.hub = '', 'none', _d.hub) AS hub,
    _d.province             AS province,
    _k.pool_id              AS pool_id,
    _l.reporting            AS reporting,
    _l.idle_devices         AS idle_devices,
    _l.online_devices       AS online_devices,
    _l.allocated_devices    AS allocated_devices,
    _l.idle_pflops_fp16     AS idle_pflops_fp16,
    _l.idle_pflops_fp32     AS idle_pflops_fp32,
    _l.idle_pflops_fp64     AS idle_pflops_fp64,
    _l.online_pflops_fp16   AS online_pflops_fp16
FROM
(
    SELECT _m.ts AS ts, _s.dc_id AS dc_id, _s.pool_id AS pool_id
    FROM (SELECT DISTINCT ts FROM {db}.pool_minutes) AS _m
    CROSS JOIN {db}.pool_known_spans AS _s
    WHERE _s.span_start <= _m.ts AND _m.ts < _s.span_end
) AS _k
LEFT JOIN {db}.pool_minute_latest AS _l ON _l.ts = _k.ts AND _l.dc_id = _k.dc_id AND _l.pool_id = _k.pool_id
LEFT JOIN {db}.datacenters AS _d ON _d.dc_id = _k.dc_id;

CREATE VIEW IF NOT EXISTS {db}.dc_surplus_minute AS
SELECT
    ts, dc_id, hub, province,
    sum(idle_pflops_fp16)        AS idle_pflops_fp16,
    sum(idle_pflops_fp32)        AS idle_pflops_fp32,
    sum(idle_pflops_fp64)        AS idle_pflops_fp64,
    sum(online_pflops_fp16)      AS online_pflops_fp16,
    sum(idle_devices)            AS idle_devices,
    sum(online_devices)          AS online_devices,
    sum(allocated_devices)       AS allocated_devices,
    toUInt64(sum(reporting))     AS pools_reporting,
    toUInt64(count() - sum(reporting)) AS pools_stale
FROM {db}.pool_minute_state
GROUP BY ts, dc_id, hub, province
HAVING pools_reporting > 0;

CREATE VIEW IF NOT EXISTS {db}.hub_surplus_minute AS
SELECT
    ts, hub,
    sum(idle_pflops_fp16)        AS idle_pflops_fp16,
    sum(idle_pflops_fp32)        AS idle_pflops_fp32,
    sum(idle_pflops_fp64)        AS idle_pflops_fp64,
    sum(online_pflops_fp16)      AS online_pflops_fp16,
    sum(idle_devices)            AS idle_devices,
    sum(online_devices)          AS online_devices,
    sum(allocated_devices)       AS allocated_devices,
    toUInt64(sum(reporting))     AS pools_reporting,
    toUInt64(count() - sum(reporting)) AS pools_stale
FROM {db}.pool_minute_state
GROUP BY ts, hub
HAVING pools_reporting > 0;

CREATE VIEW IF NOT EXISTS {db}.national_surplus_minute AS
SELECT
    ts,
    sum(idle_pflops_fp16)        AS idle_pflops_fp16,
    sum(idle_pflops_fp32)        AS idle_pflops_fp32,
    sum(idle_pflops_fp64)        AS idle_pflops_fp64,
    sum(online_pflops_fp16)      AS online_pflops_fp16,
    sum(idle_devices)            AS idle_devices,
    sum(online_devices)          AS online_devices,
    sum(allocated_devices)       AS allocated_devices,
    toUInt64(sum(reporting))     AS pools_reporting,
    toUInt64(count() - sum(reporting)) AS pools_stale
FROM {db}.pool_minute_state
GROUP BY ts
HAVING pools_reporting > 0;
