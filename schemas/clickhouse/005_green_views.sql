-- Green energy per hour (SPEC §4): a power sample belongs to the hour that holds its time;
-- shares are energy-weighted (sum over sum), never a mean of ratios.

CREATE VIEW IF NOT EXISTS {db}.dc_green_hourly AS
SELECT
    toStartOfHour(toDateTime(p.time, 'UTC'))  AS hour,
    p.dc_id                                   AS dc_id,
    if(d.hub = '', 'none', d.hub)             AS hub,
    d.province                                AS province,
    sum(p.facility_energy_kwh)                AS facility_kwh,
    sum(p.it_energy_kwh)                      AS it_kwh,
    sum(p.green_energy_kwh)                   AS green_kwh,
    sum(p.carbon_emission_kg)                 AS carbon_kg,
    if(facility_kwh > 0, green_kwh / facility_kwh, NULL) AS green_share,
    if(it_kwh > 0, facility_kwh / it_kwh, NULL)          AS pue
FROM {db}.power_samples AS p FINAL
LEFT JOIN {db}.datacenters AS d ON d.dc_id = p.dc_id
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
