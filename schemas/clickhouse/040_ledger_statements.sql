-- Hourly ledger statements (SPEC §4.1, §5): per DC and UTC hour, signed and hash-chained, one
-- row per version. `surplus ledger close` writes them; a second writer of the same statement
-- (same dc_id, hour, version) writes the same figures, digest, hash and signature (only
-- closed_at may differ), and FINAL keeps one. Earlier versions stay.

CREATE TABLE IF NOT EXISTS {db}.ledger_statements
(
    dc_id           LowCardinality(String),
    hour            DateTime('UTC'),
    version         UInt32,
    reason          LowCardinality(String),
    entries         UInt64,
    device_seconds  Decimal(38, 3),
    energy_kwh      Decimal(38, 6),
    amount_cny      Decimal(38, 4),
    entries_digest  String,
    prev_hash       String,
    hash            String,
    key_id          String,
    signature       String,
    closed_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (dc_id, hour, version);
