-- Access control for the Surplus database `cpn` on a ClickHouse server with SQL-driven access
-- control (users and roles in the server's local_directory storage). Run once, and again after
-- editing, as a user with access_management: clickhouse-client --multiquery < roles.sql
-- Idempotent. XML-only servers: users.d/surplus-analysts.xml and province-analyst.xml.example
-- hold the same grants and row policies.
--
-- Roles
--   cpn_writer            the stream workers: read and insert (job states are read back)
--   cpn_migrator          `surplus db migrate`: DDL in cpn
--   cpn_analyst           national read-only analyst (ministry analysts; Grafana's `analyst`)
--   cpn_province_reader   grants of a provincial analyst (no rows without a province role)
--   cpn_province_<code>   one per province set, e.g. cpn_province_cn_gz: restrictive row policies
--
-- Row policies: a permissive `USING 1 TO ALL` policy keeps every row visible to everyone else
-- (workers, national analysts), whatever `users_without_row_policies_can_read_rows` says; each
-- province role adds RESTRICTIVE policies, which are ANDed with it. So a province role never
-- widens anything, and two province roles on one user intersect: give an analyst one role whose
-- province list holds all of their provinces. The SPEC §5 views read the raw tables as the
-- invoker (SQL SECURITY INVOKER, ClickHouse's default), so the raw-table policies restrict the
-- hub and national views, the ledger and tenant usage too; the views that carry `province` get
-- their own policy as well. A DC counts for a province when any of its registrations names it.
-- The dead letters (raw payloads of every DC), pipeline metrics, alert state,
-- schema_migrations(_steps) and the dispatcher's forecast (pool_idle_forecast, pool_sellable_24h:
-- the national platform's) and national_surplus_hourly / hub_surplus_hourly (their settled
-- hours are national sums in national_hourly_rollup / hub_hourly_rollup, with no dc_id for a
-- policy: a province reads dc_surplus_hourly) are not granted to provincial analysts at all.

CREATE ROLE IF NOT EXISTS cpn_writer;
GRANT SELECT, INSERT ON cpn.* TO cpn_writer;

CREATE ROLE IF NOT EXISTS cpn_migrator;
GRANT SELECT, INSERT, CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER TABLE, ALTER VIEW, DROP VIEW ON cpn.* TO cpn_migrator;

CREATE ROLE IF NOT EXISTS cpn_analyst;
GRANT SELECT ON cpn.* TO cpn_analyst;

CREATE ROLE IF NOT EXISTS cpn_province_reader;
GRANT
    SELECT ON cpn.registrations,
    SELECT ON cpn.capacity_samples,
    SELECT ON cpn.pool_minutes,
    SELECT ON cpn.power_samples,
    SELECT ON cpn.heartbeats,
    SELECT ON cpn.job_events,
    SELECT ON cpn.ledger_entries,
    SELECT ON cpn.datacenters,
    SELECT ON cpn.pool_minute_state,
    SELECT ON cpn.dc_surplus_minute,
    SELECT ON cpn.dc_green_hourly,
    SELECT ON cpn.agent_freshness,
    SELECT ON cpn.pool_minute_latest,
    SELECT ON cpn.pool_known_spans,
    SELECT ON cpn.hub_surplus_minute,
    SELECT ON cpn.national_surplus_minute,
    SELECT ON cpn.hub_green_hourly,
    SELECT ON cpn.national_green_hourly,
    SELECT ON cpn.ledger,
    SELECT ON cpn.tenant_usage_daily,
    SELECT ON cpn.ledger_statements,
    SELECT ON cpn.pool_days,
    SELECT ON cpn.power_hourly_samples,
    SELECT ON cpn.dc_minute_rollup,
    SELECT ON cpn.dc_hourly_rollup,
    SELECT ON cpn.dc_surplus_hourly,
    SELECT ON cpn.surplus_touched_hours,
    SELECT ON cpn.surplus_rolled_hours,
    SELECT ON cpn.surplus_hub_map,
    SELECT ON cpn.surplus_unsettled_hours,
    SELECT ON cpn.pool_minute_known,
    SELECT ON cpn.dc_minute_live,
    SELECT ON cpn.dc_minute_all,
    SELECT ON cpn.dc_last_seen,
    SELECT ON cpn.dc_spool_backlog TO cpn_province_reader;

-- Every limit has a MIN as well as a MAX: 0 means "unlimited" to ClickHouse and passes a bare MAX.
CREATE SETTINGS PROFILE OR REPLACE cpn_analyst_limits
    SETTINGS readonly = 2,
             max_execution_time = 60 MIN 1 MAX 300,
             max_memory_usage = 4000000000 MIN 1 MAX 8000000000,
             max_result_rows = 1000000 MIN 1 MAX 10000000,
             result_overflow_mode = 'throw' CONST,
             max_threads = 4 MIN 1 MAX 8
    TO cpn_analyst, cpn_province_reader;

CREATE QUOTA OR REPLACE cpn_analyst_quota KEYED BY user_name
    FOR INTERVAL 1 hour MAX queries = 20000, errors = 2000
    TO cpn_analyst, cpn_province_reader;

CREATE ROW POLICY OR REPLACE cpn_all_rows ON
    cpn.registrations,
    cpn.capacity_samples,
    cpn.pool_minutes,
    cpn.power_samples,
    cpn.heartbeats,
    cpn.job_events,
    cpn.ledger_entries,
    cpn.datacenters,
    cpn.pool_minute_state,
    cpn.dc_surplus_minute,
    cpn.dc_green_hourly,
    cpn.ledger_statements,
    cpn.pool_days,
    cpn.power_hourly_samples,
    cpn.dc_minute_rollup,
    cpn.dc_hourly_rollup,
    cpn.dc_surplus_hourly,
    cpn.dc_last_seen,
    cpn.dc_spool_backlog
    FOR SELECT USING 1 AS PERMISSIVE TO ALL;

-- Guizhou (CN-GZ). For another province set, copy this block and change the role name and the
-- province list in both policies, e.g. cpn_province_cn_gd with ('CN-GD').
CREATE ROLE IF NOT EXISTS cpn_province_cn_gz;
GRANT cpn_province_reader TO cpn_province_cn_gz;

CREATE ROW POLICY OR REPLACE cpn_province_cn_gz ON
    cpn.registrations,
    cpn.datacenters,
    cpn.pool_minute_state,
    cpn.dc_surplus_minute,
    cpn.dc_green_hourly,
    cpn.dc_surplus_hourly
    FOR SELECT USING province IN ('CN-GZ') AS RESTRICTIVE TO cpn_province_cn_gz;

CREATE ROW POLICY OR REPLACE cpn_province_cn_gz ON
    cpn.capacity_samples,
    cpn.pool_minutes,
    cpn.power_samples,
    cpn.heartbeats,
    cpn.job_events,
    cpn.ledger_entries,
    cpn.ledger_statements,
    cpn.pool_days,
    cpn.power_hourly_samples,
    cpn.dc_minute_rollup,
    cpn.dc_hourly_rollup,
    cpn.dc_last_seen,
    cpn.dc_spool_backlog
    FOR SELECT USING dc_id IN (SELECT dc_id FROM cpn.registrations WHERE province IN ('CN-GZ'))
    AS RESTRICTIVE TO cpn_province_cn_gz;

-- Users: passwords are never written here; give the SHA-256 of one (echo -n "$PW" | sha256sum).
-- CREATE USER IF NOT EXISTS surplus_worker IDENTIFIED WITH sha256_hash BY '<sha256 hex>';
-- GRANT cpn_writer TO surplus_worker;
-- CREATE USER IF NOT EXISTS analyst_cn_gz IDENTIFIED WITH sha256_hash BY '<sha256 hex>'
--     DEFAULT DATABASE cpn;
-- GRANT cpn_province_cn_gz TO analyst_cn_gz;
