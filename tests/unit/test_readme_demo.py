"""The README's account of the demo's fleet and counters is what the demo does (issue #16)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from agents.fleet import national_fleet
from surplus.demo import Progress

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_readme_counts_the_demo_fleet_right() -> None:
    fleet = national_fleet(48, seed=7)  # the demo's defaults (--dcs 48 --seed 7)
    hubs = Counter(d.dc.hub for d in fleet)
    at_clusters = [d for d in fleet if d.dc.cluster is not None]
    elsewhere = sorted({d.dc.name.split(" DC ")[0] for d in fleet if d.dc.cluster is None})
    assert hubs == dict.fromkeys(("jjj", "yrd", "gba", "cy", "nm", "gz", "gs", "nx"), 6)
    assert "none" not in hubs
    said = re.search(r"48 data centers, six in each of the 8 hub nodes — (\d+) at\s+the hubs' (\d+) clusters "
                     r"and (\d+) elsewhere in a hub's provinces \(([^)]*)\); none outside the hubs", README)
    assert said, "the README's sentence on the demo's fleet changed: keep it true"
    assert int(said.group(1)) == len(at_clusters)
    assert int(said.group(2)) == len({d.dc.cluster for d in at_clusters})
    assert int(said.group(3)) == len(fleet) - len(at_clusters)
    assert sorted(said.group(4).replace("\n", " ").split(", ")) == elsewhere


def test_the_demo_counters_account_for_every_event() -> None:
    """Before: 'events processed 484,325' under 'events published 484,319' (the 6 bad messages sent
    on purpose were in Kafka and processed, but not counted as published)."""
    p = Progress(phase="done", history=400_000, live=84_319, injected=6, processed=484_325, end=484_325)
    rows = dict(p.counters())
    assert p.published == p.end == p.processed
    assert rows["events published"] == "484,325 (400,000 history, 84,319 live, 6 bad on purpose)"
    assert rows["events processed"] == "484,325 of the 484,325 in Kafka"
    assert rows["consumer lag"] == "0" and "re-sent" not in rows
    resent = Progress(phase="done", history=0, live=100, injected=6, processed=110, end=110)
    assert dict(resent.counters())["re-sent"].startswith("4 delivered twice")
