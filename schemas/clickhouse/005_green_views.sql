-- Green energy per hour (SPEC §4): a power sample belongs to the hour that holds its time;
-- shares are energy-weighted (sum over sum), never a mean of ratios.

CREATE VIEW IF NOT EXISTS {db}.dc_green_hourly AS
SELECT
    toStartOfHour(toDateTime(_p.time, 'UTC'))  AS hour,
    _p.dc_id                                   AS dc_id,
    if(_d.hub = '', 'none', _d.hub)             AS hub,
    _d.province                                AS province,
    sum(_p.facility_energy_kwh)                AS facility_kwh,
    sum(_p.it_energy_kwh)                      AS it_kwh,
    sum(_p.green_energy_kwh)                   AS green_kwh,
    sum(_p.carbon_emission_kg)                 AS carbon_kg,
    if(facility_kwh > 0, green_kwh / facility_kwh, NULL) AS green_share,
    if(it_kwh > 0, facility_kwh / it_kwh, NULL)          AS pue
FROM {db}.power_samples AS _p FINAL
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
