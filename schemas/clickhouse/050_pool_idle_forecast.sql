-- The dispatcher's forecast (SPEC §5, §8): quantiles of each pool's hourly idle devices (the
-- fewest idle devices at any reporting minute of the hour) per future UTC hour, written by
-- `surplus forecast refresh` (and hourly by `surplus api`). One row per pool and hour: the
-- latest forecast made for it (ReplacingMergeTree versioned by made_at; exact under FINAL).
-- No TTL: about 1.3 M rows per 150 pools and year, and stores of simulated past stay whole.
CREATE TABLE IF NOT EXISTS {db}.pool_idle_forecast
(
    made_at       DateTime('UTC'),
    dc_id         LowCardinality(String),
    pool_id       String,
    device_model  LowCardinality(String),
    hour          DateTime('UTC'),
    idle_p10      Float64,
    idle_p50      Float64,
    idle_p90      Float64
)
ENGINE = ReplacingMergeTree(made_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (dc_id, pool_id, hour);

-- Sellable devices over the next 24 h per pool at each refresh (SPEC §8 with H = 24 and the
-- configured headroom), computed by the same code as the offers: what the Grafana panel
-- "sellable devices, next 24 h, by hub and device class" sums. device_class is the catalogue's
-- kind: `accelerator` (devices) or `cpu` (cores).
CREATE TABLE IF NOT EXISTS {db}.pool_sellable_24h
(
    made_at           DateTime('UTC'),
    as_of             DateTime('UTC'),
    dc_id             LowCardinality(String),
    pool_id           String,
    hub               LowCardinality(String),
    province          LowCardinality(String),
    device_model      LowCardinality(String),
    device_class      LowCardinality(String),
    devices_idle_now  Int64,
    devices_sellable  Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(made_at)
ORDER BY (made_at, dc_id, pool_id);
