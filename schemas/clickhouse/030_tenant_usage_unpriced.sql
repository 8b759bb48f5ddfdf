-- Unpriced usage in the daily usage relation (SPEC §5, issue #16): `unpriced_device_hours`, the
-- part of `device_hours` whose entries had no price in the price book (amount_cny 0), appended
-- after the columns of migration 006 so analysts' queries keep working.

CREATE OR REPLACE VIEW {db}.tenant_usage_daily AS
SELECT
    toDate(period_end, 'Asia/Shanghai')  AS day,
    tenant_id,
    dc_id,
    sum(device_seconds) / 3600           AS device_hours,
    sum(energy_kwh)                      AS energy_kwh,
    sum(amount_cny)                      AS amount_cny,
    sumIf(device_seconds, priced = 0) / 3600 AS unpriced_device_hours
FROM {db}.ledger_entries FINAL
GROUP BY day, tenant_id, dc_id;
