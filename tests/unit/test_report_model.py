"""The declared type of `surplus report --json`: a JSON Schema that refuses what the report is not."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from surplus.report_model import json_schema, validate

SURPLUS = {"idle_pflops": {"fp16": 1.5, "fp32": 0.1, "fp64": 0.05}, "online_pflops_fp16": 3.0,
           "idle_devices": 3, "online_devices": 6, "allocated_devices": 3,
           "devices": {"accelerators": {"idle": 1, "online": 2, "allocated": 1},
                       "cpu_cores": {"idle": 2, "online": 4, "allocated": 2}},
           "pools_reporting": 2, "pools_stale": 0}
ENERGY = {"facility_kwh": 10.0, "it_kwh": 8.0, "green_kwh": 5.0, "carbon_kg": 1.0,
          "green_share": 0.5, "pue": 1.25}
HEAD = {"at": "2026-11-27T00:10:00Z", "requested_at": None,
        "period": {"start": None, "end": None, "hours": None}, "filters": {"hub": None, "dc": None}}
TENANTS = {"tenants": [{"tenant_id": "t-a", "device_hours": 2.0, "energy_kwh": 1.0,
                        "amount_cny": "19.0000", "dcs": 1}],
           "tenants_total": {"device_hours": 2.0, "energy_kwh": 1.0, "amount_cny": "19.0000",
                             "unpriced_device_hours": 0.5, "unpriced_share": 0.25, "tenants": 1}}
REPORT: dict[str, Any] = {
    **HEAD, **TENANTS, "data_time": "2026-11-27T00:10:30Z",
    "targets": {"green_share": 0.8, "silent_after_s": 180},
    "national": {"ts": "2026-11-27T00:10:00Z", **SURPLUS,
                 "range": {"first_ts": "2026-11-27T00:01:00Z", "last_ts": "2026-11-27T00:10:00Z",
                           "minutes": 10, **{p: {"min": 0.0, "max": 2.0} for p in ("fp16", "fp32", "fp64")}},
                 "energy": ENERGY},
    "hubs": [{"hub": "gz", "name": "Guizhou hub", **SURPLUS, **ENERGY, "green_share_target": 0.8,
              "green_share_met": False, "pue_target": 1.2, "pue_met": False}],
    "top_dcs": [{"dc_id": "gz-1", "name": "GZ 1", "hub": "gz", "province": "CN-GZ", **SURPLUS}],
    "stale_dcs": [{"dc_id": "gz-2", "name": "", "hub": "gz", "province": "CN-GZ", "pools_reporting": 0,
                   "pools_stale": 0, "last_seen": "2026-11-27T00:00:00Z", "age_s": 630.0,
                   "spool_backlog_events": 12, "reasons": ["silent"]}],
    "deadletters": {"total": 1, "by_reason": [{"reason": "schema", "count": 1}]},
}


def test_a_report_of_the_declared_shape_validates() -> None:
    validate(REPORT)
    validate({**REPORT, "national": None, "charts": ["var/national_surplus.png"]})
    validate({**HEAD, **TENANTS}, tenants_only=True)


@pytest.mark.parametrize("change", ["missing", "extra", "wrong_type", "nested_extra"])
def test_anything_else_is_refused(change: str) -> None:
    bad = copy.deepcopy(REPORT)
    if change == "missing":
        del bad["hubs"]
    elif change == "extra":
        bad["surprise"] = 1
    elif change == "wrong_type":
        bad["deadletters"]["total"] = "one"
    else:
        bad["hubs"][0]["idle_pflops"]["fp8"] = 1.0
    with pytest.raises(ValidationError):
        validate(bad)


def test_the_json_schema_can_be_published() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == set(REPORT) and schema["additionalProperties"] is False
    assert "charts" in schema["properties"] and "charts" not in schema["required"]
    json.dumps(schema)
    tenants = json_schema(tenants_only=True)
    assert set(tenants["required"]) == set(HEAD) | set(TENANTS)
