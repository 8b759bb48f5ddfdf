"""Analysts cannot lift their limits through `surplus store serve` either (issue #21, SPEC §9).

The same profile constraints as on chDB directly (tests/integration/test_security_clickhouse.py),
now through the HTTP interface with clickhouse-connect, as the national and a provincial analyst:
`SETTINGS <limit> = 0` (0 is "unlimited" to ClickHouse) and values past the MAX are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.served import Served, serve, users_dir

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow, pytest.mark.timeout(300)]

LIFTS = ["max_execution_time = 0", "max_execution_time = 100000", "max_memory_usage = 0",
         "max_memory_usage = 100000000000", "max_result_rows = 0", "max_result_rows = 1000000000000",
         "max_threads = 1000", "result_overflow_mode = 'break'"]
REFUSED = r"452|SETTING_CONSTRAINT_VIOLATION|shouldn't be|is readonly"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("served-limits")
    server = serve(work / "store", users_dir(work / "users.d"), log=work / "serve.log")
    yield server
    assert server.stop() == 0, (work / "serve.log").read_text()[-3000:]


@pytest.mark.parametrize("user", ["analyst", "analyst_cn_gz"])
def test_analysts_cannot_lift_their_limits_through_the_server(served: Served, user: str, tmp_path: Path) -> None:
    client = served.client(user)
    assert client.query("SELECT getSetting('max_execution_time')").result_rows[0][0] == 60
    for lift in LIFTS:
        with pytest.raises(Exception, match=REFUSED):
            client.query(f"SELECT count() FROM cpn.datacenters SETTINGS {lift}")
        with pytest.raises(Exception, match=REFUSED):
            client.query("SELECT count() FROM cpn.datacenters", settings=dict([_pair(lift)]))
    assert client.query("SELECT count() FROM cpn.datacenters SETTINGS max_execution_time = 10").result_rows


def _pair(setting: str) -> tuple[str, str]:
    name, _, value = setting.partition(" = ")
    return name, value.strip("'")
