-- cpn.datacenters: the latest cpn.dc.v1 per dc_id; cpn.agent_freshness: when each DC last spoke;
-- cpn.deadletter: every rejected message once.

CREATE VIEW IF NOT EXISTS {db}.deadletter AS
SELECT received_at, topic, partition, offset, reason, detail, payload
FROM {db}.dead_letters FINAL;

CREATE VIEW IF NOT EXISTS {db}.datacenters AS
SELECT
    dc_id,
    argMax(name, (time, event_id))         AS name,
    argMax(operator, (time, event_id))     AS operator,
    argMax(province, (time, event_id))     AS province,
    argMax(hub, (time, event_id))          AS hub,
    argMax(cluster, (time, event_id))      AS cluster,
    argMax(lat, (time, event_id))          AS lat,
    argMax(lon, (time, event_id))          AS lon,
    argMax(racks_total, (time, event_id))  AS racks_total,
    max(time)                              AS registered_at
FROM {db}.registrations
GROUP BY dc_id;

CREATE VIEW IF NOT EXISTS {db}.agent_freshness AS
SELECT
    dc_id,
    max(last_time)                                         AS last_seen,
    dateDiff('second', max(last_time), now64(3, 'UTC'))    AS age_s,
    argMaxIf(backlog, backlog_time, backlog_time > toDateTime64(0, 3, 'UTC')) AS spool_backlog_events
FROM
(
    SELECT dc_id, max(time) AS last_time, toUInt64(0) AS backlog, toDateTime64(0, 3, 'UTC') AS backlog_time
    FROM {db}.capacity_samples GROUP BY dc_id
    UNION ALL
    SELECT dc_id, max(time), toUInt64(0), toDateTime64(0, 3, 'UTC') FROM {db}.power_samples GROUP BY dc_id
    UNION ALL
    SELECT dc_id, max(time), toUInt64(0), toDateTime64(0, 3, 'UTC') FROM {db}.job_events GROUP BY dc_id
    UNION ALL
    SELECT dc_id, max(time), toUInt64(0), toDateTime64(0, 3, 'UTC') FROM {db}.registrations GROUP BY dc_id
    UNION ALL
    SELECT dc_id, max(time), argMax(spool_backlog_events, (time, event_id)), max(time)
    FROM {db}.heartbeats GROUP BY dc_id
)
GROUP BY dc_id;
