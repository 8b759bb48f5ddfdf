-- cpn.agent_freshness from incremental state. Until this file it was a GROUP BY dc_id over every
-- raw table (capacity samples included) on each read, and `surplus alerts run` reads it every
-- evaluation: at national scale a scan of every stored sample once a minute. Now ClickHouse
-- keeps, as events are inserted, per DC:
--   dc_last_seen      its newest event time over registrations, capacity, power, heartbeats and
--                     job events (max: a duplicate or a replay changes nothing);
--   dc_spool_backlog  the spool backlog of its newest heartbeat by (time, event id), as before.
-- The view's columns and meaning are unchanged; a read is a GROUP BY over one row per DC and part.
-- A DC whose raw rows have all passed the raw retention is still listed, with its last time.

CREATE TABLE IF NOT EXISTS {db}.dc_last_seen
(
    dc_id      LowCardinality(String),
    last_time  SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY dc_id;

CREATE TABLE IF NOT EXISTS {db}.dc_spool_backlog
(
    dc_id    LowCardinality(String),
    backlog  AggregateFunction(argMax, UInt64, Tuple(DateTime64(3, 'UTC'), String))
)
ENGINE = AggregatingMergeTree
ORDER BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_last_seen_from_registrations TO {db}.dc_last_seen AS
SELECT dc_id, max(time) AS last_time FROM {db}.registrations GROUP BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_last_seen_from_capacity TO {db}.dc_last_seen AS
SELECT dc_id, max(time) AS last_time FROM {db}.capacity_samples GROUP BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_last_seen_from_power TO {db}.dc_last_seen AS
SELECT dc_id, max(time) AS last_time FROM {db}.power_samples GROUP BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_last_seen_from_heartbeats TO {db}.dc_last_seen AS
SELECT dc_id, max(time) AS last_time FROM {db}.heartbeats GROUP BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_last_seen_from_jobs TO {db}.dc_last_seen AS
SELECT dc_id, max(time) AS last_time FROM {db}.job_events GROUP BY dc_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dc_spool_backlog_from_heartbeats TO {db}.dc_spool_backlog AS
SELECT dc_id, argMaxState(spool_backlog_events, (time, event_id)) AS backlog
FROM {db}.heartbeats GROUP BY dc_id;

-- A store migrated before this file: its rows go through the same definitions once (a row the
-- views above also took in the meantime is counted twice, which max and argMax ignore).
INSERT INTO {db}.dc_last_seen
SELECT dc_id, max(t) FROM
(
    SELECT dc_id, max(time) AS t FROM {db}.registrations GROUP BY dc_id
    UNION ALL SELECT dc_id, max(time) AS t FROM {db}.capacity_samples GROUP BY dc_id
    UNION ALL SELECT dc_id, max(time) AS t FROM {db}.power_samples GROUP BY dc_id
    UNION ALL SELECT dc_id, max(time) AS t FROM {db}.heartbeats GROUP BY dc_id
    UNION ALL SELECT dc_id, max(time) AS t FROM {db}.job_events GROUP BY dc_id
)
GROUP BY dc_id;

INSERT INTO {db}.dc_spool_backlog
SELECT dc_id, argMaxState(spool_backlog_events, (time, event_id)) FROM {db}.heartbeats GROUP BY dc_id;

DROP VIEW IF EXISTS {db}.agent_freshness;

CREATE VIEW IF NOT EXISTS {db}.agent_freshness AS
SELECT
    seen.dc_id                                             AS dc_id,
    seen.last_seen                                         AS last_seen,
    dateDiff('second', seen.last_seen, now64(3, 'UTC'))    AS age_s,
    ifNull(backlog.spool_backlog_events, 0)                AS spool_backlog_events
FROM
(
    SELECT dc_id, max(last_time) AS last_seen FROM {db}.dc_last_seen GROUP BY dc_id
) AS seen
LEFT JOIN
(
    SELECT dc_id, argMaxMerge(backlog) AS spool_backlog_events FROM {db}.dc_spool_backlog GROUP BY dc_id
) AS backlog ON seen.dc_id = backlog.dc_id;
