-- The accounting ledger (SPEC §4): one row per entry id `<dc_id>/<job_id>/<seq>`. A replay
-- writes the same rows again; FINAL counts each once. The cumulative totals of the entry's
-- event are kept too: they are the per-job state a restarted worker resumes from.

CREATE TABLE IF NOT EXISTS {db}.ledger_entries
(
    entry_id              String,
    dc_id                 LowCardinality(String),
    job_id                String,
    tenant_id             LowCardinality(String),
    pool_id               String,
    device_model          LowCardinality(String),
    seq                   UInt64,
    period_start          DateTime64(3, 'UTC'),
    period_end            DateTime64(3, 'UTC'),
    device_seconds        Float64,
    energy_kwh            Float64,
    amount_cny            Decimal(18, 4),
    priced                UInt8,
    device_seconds_total  Float64,
    energy_kwh_total      Float64,
    written_at            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dc_id, job_id, seq);

CREATE VIEW IF NOT EXISTS {db}.ledger AS
SELECT
    entry_id, dc_id, job_id, tenant_id, pool_id, device_model, seq,
    period_start, period_end, device_seconds, energy_kwh, amount_cny
FROM {db}.ledger_entries FINAL;

CREATE VIEW IF NOT EXISTS {db}.tenant_usage_daily AS
SELECT
    toDate(period_end, 'Asia/Shanghai')  AS day,
    tenant_id,
    dc_id,
    sum(device_seconds) / 3600           AS device_hours,
    sum(energy_kwh)                      AS energy_kwh,
    sum(amount_cny)                      AS amount_cny
FROM {db}.ledger_entries FINAL
GROUP BY day, tenant_id, dc_id;
