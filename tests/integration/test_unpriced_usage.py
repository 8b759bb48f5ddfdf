"""Unpriced usage is visible (issue #16): the default price book prices every catalogue model,
and what a book leaves out is counted, to the device-second, in tenant_usage_daily's
`unpriced_device_hours` and in the report's tenants total."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from surplus.report import build_report
from tests.integration.test_statements import H0, Pipeline, job_event

pytestmark = pytest.mark.clickhouse


def test_unpriced_device_hours_are_exact(store: Any) -> None:
    # an H800 (unpriced in the old default book, 16.33 CNY/h now [estimate]) for 2 h on 8 devices,
    # and a model in no catalogue and no price book for 1.5 h on 8 devices
    events = [job_event("dc-a", "h800", s, H0 + timedelta(minutes=30 * s), 8 * 1800.0 * s, 0.5 * s,
                        model="nvidia-h800-sxm5-80gb") for s in range(5)]
    events += [job_event("dc-a", "mystery", s, H0 + timedelta(minutes=30 * s), 8 * 1800.0 * s, 0.2 * s,
                         model="acme-npu-9") for s in range(4)]
    Pipeline(store).feed(events)
    rows = store.rows("SELECT tenant_id, dc_id, sum(device_hours), sum(unpriced_device_hours), "
                      "sum(amount_cny) FROM {db}.tenant_usage_daily GROUP BY tenant_id, dc_id")
    assert [(t, dc) for t, dc, *_ in rows] == [("acme-ai", "dc-a")]
    (_, _, hours, unpriced, amount), = rows
    assert (hours, unpriced) == (28.0, 12.0)  # 16 device-hours of H800 priced, 12 of acme-npu-9 not
    assert Decimal(amount) == Decimal("16.33") * 16
    names = [r[0] for r in store.rows("SELECT name FROM system.columns WHERE database = '{db}' "
                                      "AND table = 'tenant_usage_daily' ORDER BY position")]
    assert names == ["day", "tenant_id", "dc_id", "device_hours", "energy_kwh", "amount_cny",
                     "unpriced_device_hours"]  # appended: analysts' column positions hold

    report = build_report(store.client, store.database)
    total = report["tenants_total"]
    assert (total["device_hours"], total["unpriced_device_hours"]) == (28.0, 12.0)
    assert total["unpriced_share"] == pytest.approx(12 / 28)
