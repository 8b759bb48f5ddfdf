"""Slurm job lifecycles as they are: preemption, requeue, suspension, node failure, arrays, het jobs.

Every device-second of every run is metered exactly once (checked through streams.ledger), seq
only rises, the job ends once, and the totals never fall on the wire (a hypothesis property).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.collectors import Collected, Output
from agents.collectors.slurm import SlurmCollector
from agents.records import serialise
from agents.settings import SlurmCollector as SlurmSettings
from agents.settings import SlurmPartition
from schemas.decode import decode
from schemas.events import JobEvent
from schemas.prices import PriceBook
from streams.ledger import apply

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=CST)
BOOK = PriceBook.parse('[[price]]\ndevice_model = "nvidia-h100-sxm5-80gb"\n'
                       'cny_per_device_hour = "10"\neffective_from = 2026-01-01\n')


def collector(grace_s: int = 1800) -> SlurmCollector:
    cfg = SlurmSettings(enabled=True, requeue_grace_s=grace_s, partitions=[
        SlurmPartition(name="gpu", pool_id="h100", device_model="nvidia-h100-sxm5-80gb")])
    return SlurmCollector("dc-1", cfg, 60)


def row(job: str, state: str, elapsed: int, start: datetime | None, end: datetime | None = None,
        gpus: int = 1, energy: str = "0") -> str:
    s = start.strftime("%Y-%m-%dT%H:%M:%S") if start else "Unknown"
    e = end.strftime("%Y-%m-%dT%H:%M:%S") if end else "Unknown"
    return f"{job}|u|proj|gpu|{state}|cpu=8,gres/gpu={gpus},node=1|{elapsed}|{s}|{e}|{energy}"


class Run:
    """Feeds polls to one collector, keeps what reached the (pretend) spool."""

    def __init__(self, c: SlurmCollector | None = None) -> None:
        self.c = c or collector()
        self.events: list[JobEvent] = []

    def poll(self, now: datetime, *rows: str, spooled: bool = True) -> Collected:
        result = self.c.read(Output("\n".join(rows) + "\n"), now.astimezone(UTC))
        if spooled:
            for e in result.events:
                decoded = decode(serialise(e), now=datetime(2027, 1, 1, tzinfo=UTC), key="dc-1")
                assert isinstance(decoded, JobEvent), decoded
                self.events.append(decoded)
            result.commit()
        return result

    def of(self, job: str) -> list[JobEvent]:
        return [e for e in self.events if e.data.job_id == job]

    def metered(self, job: str) -> Decimal:
        ledger = apply(self.of(job), {}, BOOK)
        assert not ledger.rejects, ledger.rejects
        return sum((e.device_seconds for e in ledger.entries), Decimal(0))

    def ends(self, job: str) -> list[JobEvent]:
        return [e for e in self.of(job) if e.data.phase == "end"]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_requeued_job_seen_as_requeued_then_pending_then_running_again() -> None:
    r = Run()
    r.poll(at(30), row("77", "RUNNING", 1800, at(0), gpus=2))
    r.poll(at(41), row("77", "REQUEUED", 2400, at(0), at(40), gpus=2))
    r.poll(at(43), row("77", "PENDING", 0, None, gpus=2))
    r.poll(at(60), row("77", "RUNNING", 900, at(45), gpus=2))
    r.poll(at(76), row("77", "COMPLETED", 1800, at(45), at(75), gpus=2))
    assert r.metered("77") == 2 * (2400 + 1800)
    (end,) = r.ends("77")
    assert end.data.status == "succeeded"
    seqs = [e.data.seq for e in r.of("77")]
    assert seqs == sorted(set(seqs))


def test_sacct_with_duplicates_shows_every_run_at_once() -> None:
    r = Run()  # `sacct -D`: the first run's row and the second's, same JobID
    r.poll(at(76), row("78", "PREEMPTED", 3060, at(0), at(51)), row("78", "COMPLETED", 1200, at(55), at(75)))
    assert r.metered("78") == 3060 + 1200 and len(r.ends("78")) == 1


def test_preempted_job_that_is_not_requeued_ends_after_the_grace_as_cancelled() -> None:
    r = Run(collector(grace_s=600))
    r.poll(at(30), row("79", "RUNNING", 1800, at(0)))
    r.poll(at(41), row("79", "PREEMPTED", 2400, at(0), at(40)))
    assert r.ends("79") == [] and r.metered("79") == 2400  # metered at once, not yet ended
    r.poll(at(45), row("79", "PREEMPTED", 2400, at(0), at(40)))
    assert r.ends("79") == []
    r.poll(at(52), row("79", "PREEMPTED", 2400, at(0), at(40)))
    (end,) = r.ends("79")
    assert end.data.status == "cancelled" and end.time == at(40).astimezone(UTC)
    r.poll(at(53), row("79", "PREEMPTED", 2400, at(0), at(40)))
    assert len(r.ends("79")) == 1 and r.metered("79") == 2400


def test_node_failure_ends_as_failed_when_the_job_leaves_the_window() -> None:
    r = Run()
    r.poll(at(10), row("80", "RUNNING", 600, at(0), gpus=4))
    r.poll(at(20), row("80", "NODE_FAIL", 1100, at(0), at(18), gpus=4))
    r.poll(at(90), row("81", "RUNNING", 60, at(89)))  # 80 is no longer listed
    (end,) = r.ends("80")
    assert end.data.status == "failed" and r.metered("80") == 4 * 1100


def test_suspended_job_stays_open_and_resumes() -> None:
    r = Run()
    r.poll(at(10), row("82", "RUNNING", 600, at(0)))
    r.poll(at(20), row("82", "SUSPENDED", 650, at(0)))
    r.poll(at(30), row("82", "SUSPENDED", 650, at(0)))
    r.poll(at(40), row("82", "RUNNING", 1300, at(0)))
    r.poll(at(50), row("82", "COMPLETED", 1500, at(0), at(49)))
    assert r.metered("82") == 1500 and len(r.ends("82")) == 1


def test_resized_job_goes_on_as_a_new_run() -> None:
    r = Run()
    r.poll(at(10), row("83", "RUNNING", 600, at(0), gpus=8))
    r.poll(at(21), row("83", "RESIZING", 1200, at(0), at(20), gpus=8))
    r.poll(at(30), row("83", "RUNNING", 540, at(21), gpus=4))
    r.poll(at(41), row("83", "COMPLETED", 1140, at(21), at(40), gpus=4))
    assert r.metered("83") == 8 * 1200 + 4 * 1140 and len(r.ends("83")) == 1


def test_array_tasks_and_het_components_are_separate_jobs() -> None:
    r = Run()
    r.poll(at(10), row("90_1", "RUNNING", 600, at(0)), row("90_2", "COMPLETED", 300, at(0), at(5)),
           row("91+0", "RUNNING", 600, at(0), gpus=2), row("91+1", "RUNNING", 600, at(0), gpus=1),
           row("90_[3-9]", "PENDING", 0, None))
    jobs = {e.data.job_id for e in r.events}
    assert jobs == {"90_1", "90_2", "91-0", "91-1"}
    assert r.metered("91-0") == 1200 and r.metered("91-1") == 600 and r.metered("90_2") == 300


def test_events_that_did_not_reach_the_spool_are_sent_again() -> None:
    r = Run()
    r.poll(at(10), row("84", "RUNNING", 600, at(0)))
    lost = r.poll(at(20), row("84", "COMPLETED", 1200, at(0), at(19)), spooled=False)
    assert [e["data"]["phase"] for e in lost.events] == ["end"]
    r.poll(at(21), row("84", "COMPLETED", 1200, at(0), at(19)))
    assert r.metered("84") == 1200 and len(r.ends("84")) == 1


# -- the property -----------------------------------------------------------------------------

STATES = ("RUNNING", "SUSPENDED", "PREEMPTED", "REQUEUED", "PENDING", "NODE_FAIL", "RESIZING",
          "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "COMPLETING")
ENERGIES = ("0", "", "-5", "18446744073709551614", "abc")


@st.composite
def polls(draw: st.DrawFn) -> list[tuple[int, list[str], bool]]:
    """Polls of a few jobs: (minute, rows, reached the spool)."""
    jobs = draw(st.lists(st.sampled_from(["1", "2", "3_4", "5+1"]), min_size=1, max_size=3, unique=True))
    runs = {j: [0, 0, draw(st.integers(1, 8))] for j in jobs}  # run start minute, elapsed s, gpus
    final: dict[str, str] = {}  # a job in a final state is listed as it is from then on
    minute = 1
    out = []
    for _ in range(draw(st.integers(1, 12))):
        minute += draw(st.integers(1, 9))  # all within sacct's window: a listed job is remembered
        rows = []
        for job in jobs:
            if job in final:
                rows.append(final[job])
                continue
            if not draw(st.booleans()) and len(out):
                continue  # not listed this poll
            run = runs[job]
            state = draw(st.sampled_from(STATES))
            if draw(st.integers(0, 4)) == 0:  # a new run under the same JobID
                run[0], run[1] = minute - 1, 0
            run[1] = max(run[1], min((minute - run[0]) * 60, run[1] + draw(st.integers(0, 2400))))
            energy = draw(st.one_of(st.sampled_from(ENERGIES),
                                    st.integers(0, run[1] * run[2] * 900).map(str)))
            start = at(run[0])
            end = at(minute - 0.5) if state not in ("RUNNING", "SUSPENDED", "COMPLETING") else None
            if state in ("PENDING",) and draw(st.booleans()):
                rows.append(row(job, state, 0, None, gpus=run[2]))
            else:
                rows.append(row(job, state, run[1], start, end, run[2], energy))
                if state in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"):
                    final[job] = rows[-1]
        out.append((minute, rows, draw(st.integers(0, 5)) > 0))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(polls(), st.sampled_from([0, 600, 1800]))
def test_totals_never_fall_and_the_ledger_sums_to_the_last_totals(
        sequence: list[tuple[int, list[str], bool]], grace_s: int) -> None:
    r = Run(collector(grace_s))
    for minute, rows, spooled in sequence:
        r.poll(at(minute), *rows, spooled=spooled)
    for job in {e.data.job_id for e in r.events}:
        events = r.of(job)
        totals = [(e.data.seq, e.data.device_seconds_total, e.data.energy_kwh_total) for e in events]
        assert totals == sorted(totals), totals  # seq, device-seconds and energy rise together
        assert len({e.data.seq for e in events}) == len(events)  # a seq is never reused
        assert len(r.ends(job)) <= 1
        ends = r.ends(job)
        if ends:
            assert events[-1] is ends[0]  # nothing after the end
        ledger = apply(events, {}, BOOK)
        assert not ledger.rejects
        last = events[-1].data
        assert sum(e.device_seconds for e in ledger.entries) == Decimal(repr(last.device_seconds_total))
        assert sum(e.energy_kwh for e in ledger.entries) == Decimal(repr(last.energy_kwh_total))


def test_an_agent_whose_spool_failed_sends_the_finished_job_again(tmp_path: Path) -> None:
    """Commit after spool, at the agent: the poll whose events the spool refused changes no state."""
    from agents.clock import ManualClock
    from agents.outbox import Outbox
    from agents.run import Agent
    from agents.settings import DataCenter
    from agents.spool import Spool

    sacct = tmp_path / "sacct.txt"
    sacct.write_text(row("5003", "COMPLETED", 1800, at(0), at(30), gpus=2, energy="2000000") + "\n")
    cfg = SlurmSettings(enabled=True, command=["cat", str(sacct)], partitions=collector().cfg.partitions)
    slurm = SlurmCollector("nx-01", cfg, 60)
    sent: list[bytes] = []

    class Publisher:
        def __init__(self, on_delivery):  # type: ignore[no-untyped-def]
            self.on_delivery = on_delivery

        def send(self, rec):  # type: ignore[no-untyped-def]
            sent.append(rec.value)
            self.on_delivery(rec, None)
            return True

        def poll(self, timeout_s: float = 0.0) -> int:
            return 0

        def reset(self) -> None: ...

        def close(self, timeout_s: float) -> int:
            return 0

    box = Outbox(Spool(tmp_path / "spool"), Publisher)
    real_put = box.put
    fail = [True]

    def put(events):  # type: ignore[no-untyped-def]
        if fail.pop() if fail else False:
            raise OSError(28, "No space left on device")
        return real_put(events)

    box.put = put  # type: ignore[method-assign]
    dc = DataCenter(dc_id="nx-01", name="NX", operator="Example", province="CN-NX", hub="nx",
                    lat=38.5, lon=106.2, racks_total=10)
    clock = ManualClock(at(31).astimezone(UTC))
    agent = Agent(dc, [slurm], outbox=box, clock=clock)
    with pytest.raises(OSError, match="No space left"):
        agent.step()
    assert slurm.jobs == {}  # nothing reached the spool: nothing was committed
    clock.advance(60)
    agent.step()
    box.pump()
    ends = [v for v in sent if b'"phase":"end"' in v and b'"job_id":"5003"' in v]
    assert len(ends) == 1 and b'"device_seconds_total":3600' in ends[0]
    assert slurm.jobs["5003"].ended
    box.close(1)
