"""Spoofed events through the real worker Handler into ClickHouse: dead letters, no figure changes."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import load_catalogue
from schemas.prices import PriceBook
from schemas.signing import SigningKey, sign
from streams.batch import Record
from streams.signing import load_verifier
from streams.sink import Sink
from streams.worker import Handler

pytestmark = [pytest.mark.clickhouse, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 11, 27, 0, 10, tzinfo=UTC)
A, B = "gz-guian-01", "bj-01"
KEY_A = SigningKey("gz-guian-01-2026a", A, "hmac-sha256", bytes(range(32)))
KEY_A_NEW = SigningKey("gz-guian-01-2026b", A, "ed25519", bytes(range(1, 33)))
KEY_B = SigningKey("bj-01-2026a", B, "hmac-sha256", bytes(range(64, 96)))

# SPEC §5 relations (agent_freshness has a clock-dependent age_s: compared without it)
RELATIONS = {
    "national_surplus_minute": "*", "hub_surplus_minute": "*", "dc_surplus_minute": "*",
    "dc_green_hourly": "*", "hub_green_hourly": "*", "national_green_hourly": "*",
    "ledger": "*", "tenant_usage_daily": "*", "datacenters": "*",
    "agent_freshness": "dc_id, last_seen, spool_backlog_events",
}


def registry_text() -> str:
    return f"""
[[key]]
key_id = "{KEY_A.key_id}"
dc_id = "{A}"
secret = "{KEY_A.secret.hex()}"
not_after = 2026-11-27T01:00:00Z

[[key]]
key_id = "{KEY_A_NEW.key_id}"
dc_id = "{A}"
alg = "ed25519"
public_key = "{KEY_A_NEW.public_key().hex()}"
not_before = 2026-11-27T00:30:00Z

[[key]]
key_id = "{KEY_B.key_id}"
dc_id = "{B}"
secret = "base64:{__import__('base64').b64encode(KEY_B.secret).decode()}"
"""


def golden(event_type: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{event_type}.json").read_text())


class Feed:
    """Records with rising offsets on one test topic."""

    def __init__(self) -> None:
        self.offset = 0

    def record(self, obj: dict[str, Any] | bytes, key: SigningKey | None,
               *, tamper: bool = False) -> Record:
        raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        headers: tuple[tuple[str, bytes], ...] = ()
        if key is not None:
            headers = (sign(raw, key),)
        if tamper:
            raw = raw.replace(b'"devices_allocated": 380', b'"devices_allocated": 3')
        self.offset += 1
        dc = json.loads(raw)["data"]["dc_id"]
        return Record("t.telemetry", 0, self.offset, dc.encode(), raw, headers)


def event(event_type: str, event_id: str, **data: Any) -> dict[str, Any]:
    obj = copy.deepcopy(golden(event_type))
    obj["id"] = event_id
    obj["data"].update(data)
    return obj


@pytest.fixture
def handler(store: Any, tmp_path: Path) -> Handler:
    (tmp_path / "keys.toml").write_text(registry_text())
    return Handler(sink=Sink(store.client, store.database), catalogue=load_catalogue(),
                   prices=PriceBook.load(), deadletter_topic="t.deadletter",
                   verifier=load_verifier(tmp_path / "keys.toml"), clock=lambda: NOW)


def figures(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {name: store.rows(f"SELECT {cols} FROM {{db}}.{name} ORDER BY ALL")
            for name, cols in RELATIONS.items()}


def test_spoofed_events_are_dead_letters_and_change_no_figure(handler: Handler,
                                                              store: Any) -> None:
    feed = Feed()
    genuine = [
        feed.record(golden("cpn.dc.v1"), KEY_A),
        feed.record(golden("cpn.capacity.v1"), KEY_A),
        feed.record(golden("cpn.power.v1"), KEY_A),
        feed.record(event("cpn.job.v1", "job-0", phase="start", seq=0, device_seconds_total=0,
                          energy_kwh_total=0), KEY_A),
        feed.record(golden("cpn.job.v1"), KEY_A),
        feed.record(golden("cpn.heartbeat.v1"), KEY_A),
    ]
    asyncio.run(handler(genuine))
    assert sum(handler.metrics.accepted.values()) == len(genuine), handler.metrics.rejected
    before = figures(store)
    assert before["ledger"] and before["dc_surplus_minute"] and before["dc_green_hourly"]

    bigger = event("cpn.capacity.v1", "cap-spoof-1", devices_allocated=0)
    usage = event("cpn.job.v1", "job-spoof-9", seq=9, device_seconds_total=10**7,
                  energy_kwh_total=10**4)
    power = event("cpn.power.v1", "pwr-spoof")
    power["data"]["sources_kwh"] = {"grid": 0.0, "green_contract": 505.0, "onsite_renewable": 0.0}
    moved = event("cpn.dc.v1", "dc-spoof", province="CN-BJ", hub="jjj")
    crossed = event("cpn.capacity.v1", "cap-spoof-2", devices_allocated=1)
    crossed["source"] = f"//cpn/dc/{B}"  # B's source over A's data, signed by B
    late_old = event("cpn.capacity.v1", "cap-spoof-3", devices_allocated=2)
    late_old["time"] = "2026-11-27T01:00:00Z"  # the old key's not_after: no longer valid
    stranger = SigningKey("nobody-1", A, "hmac-sha256", bytes(32))
    spoofs = [
        feed.record(bigger, KEY_B),  # A's id, B's key
        feed.record(usage, KEY_B),
        feed.record(power, None),  # unsigned
        feed.record(moved, None),
        feed.record(event("cpn.capacity.v1", "cap-spoof-4"), KEY_A, tamper=True),  # tampered
        feed.record(crossed, KEY_B),
        feed.record(late_old, KEY_A),
        feed.record(event("cpn.heartbeat.v1", "hb-spoof"), stranger),
        # A's new key, but before its not_before (00:00 < 00:30)
        feed.record(event("cpn.capacity.v1", "cap-spoof-5", devices_allocated=7), KEY_A_NEW),
    ]
    asyncio.run(handler(spoofs))

    assert handler.metrics.rejected == {"bad_signature": len(spoofs)}
    assert sum(handler.metrics.accepted.values()) == len(genuine)
    assert figures(store) == before
    dead = store.rows("SELECT offset, reason, detail FROM {db}.deadletter FINAL ORDER BY offset")
    assert [(o, r) for o, r, _ in dead] == [(s.offset, "bad_signature") for s in spoofs]
    details = [d for _, _, d in dead]
    assert "belongs to DC 'bj-01'" in details[0]
    assert details[2] == "no surplus-signature header"
    assert "does not match" in details[4]
    assert "data.dc_id" in details[5]
    assert "not valid at 2026-11-27T01:00:00" in details[6]
    assert "unknown key id" in details[7]
    assert "not valid at" in details[8]
    payloads = store.rows("SELECT payload FROM {db}.deadletter FINAL ORDER BY offset")
    assert payloads[4][0].encode() == spoofs[4].value  # the original bytes are kept

    # control: without signature checks the same records do move the figures
    handler.verifier = None
    asyncio.run(handler(spoofs))
    after = figures(store)
    assert after["ledger"] != before["ledger"]
    assert after["dc_surplus_minute"] != before["dc_surplus_minute"]
    assert after["datacenters"] != before["datacenters"]


def test_rotation_both_keys_in_the_overlap_only_the_new_after(handler: Handler,
                                                            store: Any) -> None:
    feed = Feed()

    def cap(n: int, at: str, key: SigningKey) -> Record:
        obj = event("cpn.capacity.v1", f"cap-rot-{n}")
        obj["time"] = at
        return feed.record(obj, key)

    records = [
        cap(1, "2026-11-27T00:00:00Z", KEY_A),  # before the rollover: old only
        cap(2, "2026-11-27T00:00:00Z", KEY_A_NEW),  # new key not yet valid
        cap(3, "2026-11-27T00:40:00Z", KEY_A),  # overlap: both
        cap(4, "2026-11-27T00:40:00Z", KEY_A_NEW),
        cap(5, "2026-11-27T01:05:00Z", KEY_A),  # after the old key's not_after: new only
        cap(6, "2026-11-27T01:05:00Z", KEY_A_NEW),
    ]
    handler.clock = lambda: datetime(2026, 11, 27, 1, 6, tzinfo=UTC)
    asyncio.run(handler(records))
    accepted = {r[0] for r in store.rows("SELECT event_id FROM {db}.capacity_samples FINAL")}
    assert accepted == {"cap-rot-1", "cap-rot-3", "cap-rot-4", "cap-rot-6"}
    dead = store.rows("SELECT offset, reason FROM {db}.deadletter FINAL ORDER BY offset")
    assert dead == [(2, "bad_signature"), (5, "bad_signature")]
