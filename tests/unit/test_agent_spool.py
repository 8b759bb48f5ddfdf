"""The disk spool: order, acks, restart replay, torn records, the overflow policy, fsync policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.frames import HEAD
from agents.records import JOB, KIND_OF_TYPE, Record
from agents.spool import Spool, SpoolBusy

CAPACITY, POWER, HEARTBEAT = (KIND_OF_TYPE[f"cpn.{t}.v1"] for t in ("capacity", "power", "heartbeat"))


def item(kind: int, n: int, size: int = 100) -> tuple[int, int, bytes, bytes]:
    body = f'{{"kind":{kind},"n":{n},"pad":"'.encode()
    return kind, 1_700_000_000_000 + n * 1000, b"dc-1", body + b"x" * max(0, size - len(body) - 2) + b'"}'


def drain(spool: Spool) -> list[Record]:
    out: list[Record] = []
    while batch := spool.read(1000):
        out += batch
    return out


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*/*.seg"))


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
def test_replay_after_restart_in_order_with_the_same_bytes(tmp_path: Path, fsync: str) -> None:
    spool = Spool(tmp_path, fsync=fsync, segment_bytes=4096)  # type: ignore[arg-type]
    items = [item(CAPACITY if n % 3 else JOB, n) for n in range(200)]
    spool.append(items[:120])
    sent = drain(spool)
    assert len(sent) == 120
    for rec in sent[:50]:
        spool.ack(rec.kind, rec.seq)
    spool.append(items[120:])
    spool.close()  # as after SIGTERM; a crash is tested below

    again = Spool(tmp_path, fsync=fsync, segment_bytes=4096)  # type: ignore[arg-type]
    replayed = drain(again)
    acked = {(r.kind == JOB, r.seq) for r in sent[:50]}
    expected = [r for r in sent if (r.kind == JOB, r.seq) not in acked]
    assert [r.value for r in replayed if r.value in {e.value for e in expected}] == \
        [e.value for e in sorted(expected, key=lambda r: (r.kind != JOB, r.seq))]
    assert {r.value for r in replayed} == {i[3] for i in items} - {r.value for r in sent[:50]}
    assert again.backlog == 150
    # within each log (jobs, telemetry) records come in the order they were spooled
    for kinds in ({JOB}, {CAPACITY}):
        seqs = [r.seq for r in replayed if r.kind in kinds]
        assert seqs == sorted(seqs)
    again.close()


def test_acknowledged_segments_are_deleted_and_the_cursor_persists(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)
    spool.append([item(POWER, n) for n in range(300)])
    assert len(segment_files(tmp_path)) > 5
    for rec in drain(spool):
        spool.ack(rec.kind, rec.seq)
    assert spool.backlog == 0
    assert len(segment_files(tmp_path)) == 1  # only the active segment is left
    spool.close()
    again = Spool(tmp_path, segment_bytes=4096)
    assert again.backlog == 0 and drain(again) == []
    assert segment_files(tmp_path) == []
    assert (tmp_path / "telemetry" / "cursor").read_text().strip() == "300"
    again.close()


def test_unacked_records_survive_a_crash_without_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="never")
    spool.append([item(JOB, n) for n in range(10)])
    sent = drain(spool)
    spool.ack(JOB, sent[0].seq)
    spool.save_cursor()
    os.close(spool._lock)  # what the kernel does when the process is killed
    again = Spool(tmp_path)
    assert [r.seq for r in drain(again)] == list(range(1, 10))
    again.close()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_torn_last_record_is_detected_and_skipped(tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path)
    spool.append([item(CAPACITY, n) for n in range(20)])
    spool.close()
    (segment,) = segment_files(tmp_path)
    data = segment.read_bytes()
    if damage == "truncate":  # a crash in the middle of writing the last record
        segment.write_bytes(data[:-7])
    else:  # the last record's bytes are garbage: the CRC catches it
        segment.write_bytes(data[:-3] + bytes(b ^ 0xFF for b in data[-3:]))
    again = Spool(tmp_path)
    assert again.torn == 1
    records = drain(again)
    assert [r.seq for r in records] == list(range(19))
    again.append([item(CAPACITY, 99)])  # appends go on after the last good record
    (new,) = drain(again)
    assert new.seq == 19 and new.value == item(CAPACITY, 99)[3]
    again.close()
    assert Spool(tmp_path).torn == 0  # the torn tail was cut off, not left to trip again


def test_garbage_after_a_record_header_is_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([item(JOB, n) for n in range(3)])
    spool.close()
    (segment,) = segment_files(tmp_path)
    with open(segment, "ab") as handle:
        handle.write(b"\x00\x00\xff\xff")  # a length far past the end of the file
    again = Spool(tmp_path)
    assert again.torn == 1 and len(drain(again)) == 3
    again.close()


def test_overflow_drops_oldest_telemetry_never_jobs(tmp_path: Path) -> None:
    size = HEAD + 4 + 200
    spool = Spool(tmp_path, max_bytes=100 * size, segment_bytes=10 * size)
    jobs = [item(JOB, n, 200) for n in range(30)]
    spool.append(jobs[:10])
    spool.append([item(CAPACITY, n, 200) for n in range(60)])
    spool.append(jobs[10:20])
    assert spool.nbytes <= spool.max_bytes
    spool.append([item(POWER, 100 + n, 200) for n in range(40)])  # over the bound: drops
    assert spool.nbytes <= spool.max_bytes
    assert spool.counts.dropped["capacity"] > 0
    assert spool.counts.dropped.get("jobs", 0) == 0
    spool.append(jobs[20:])
    records = drain(spool)
    assert [r.value for r in records if r.kind == JOB] == [j[3] for j in jobs]  # every job, in order
    kept = [r.value for r in records if r.kind != JOB]
    assert kept[-1] == item(POWER, 139, 200)[3]  # the newest telemetry is kept
    assert item(CAPACITY, 0, 200)[3] not in kept  # the oldest went first
    dropped = sum(spool.counts.dropped.values())
    assert dropped + len(kept) == 100 - sum(spool.counts.refused.values())
    spool.close()


def test_when_only_jobs_remain_telemetry_is_refused_and_jobs_kept(tmp_path: Path) -> None:
    size = HEAD + 4 + 200
    spool = Spool(tmp_path, max_bytes=20 * size, segment_bytes=4 * size)
    spool.append([item(JOB, n, 200) for n in range(20)])
    result = spool.append([item(HEARTBEAT, 50, 200), item(CAPACITY, 51, 200)])
    assert result.refused == 2 and spool.counts.refused == {"heartbeat": 1, "capacity": 1}
    more = spool.append([item(JOB, 20, 200), item(POWER, 52, 200)])  # the job goes in anyway
    assert [r.kind for r in more.records] == [JOB]
    assert spool.counts.jobs_over_bound == 1 and spool.counts.refused["power"] == 1
    assert [r.kind for r in drain(spool)] == [JOB] * 21
    spool.close()


def test_dropping_telemetry_that_was_in_flight(tmp_path: Path) -> None:
    size = HEAD + 4 + 200
    spool = Spool(tmp_path, max_bytes=30 * size, segment_bytes=5 * size)
    spool.append([item(CAPACITY, n, 200) for n in range(25)])
    in_flight = drain(spool)
    spool.append([item(CAPACITY, 100 + n, 200) for n in range(20)])  # drops in-flight segments
    for rec in in_flight:  # late delivery reports for records already dropped: harmless
        spool.ack(rec.kind, rec.seq)
    left = drain(spool)
    for rec in left:
        spool.ack(rec.kind, rec.seq)
    assert spool.backlog == 0 and spool.telemetry.cursor == spool.telemetry.next_seq
    spool.close()


def test_rewind_resends_everything_unacked(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([item(CAPACITY, n) for n in range(10)] + [item(JOB, n) for n in range(5)])
    first = drain(spool)
    for rec in first[::2]:
        spool.ack(rec.kind, rec.seq)
    spool.rewind()
    again = drain(spool)
    assert {r.value for r in again} == {r.value for r in first[1::2]}


def test_backlog_and_oldest_age(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.oldest_time_ms() is None
    spool.append([item(CAPACITY, 5), item(JOB, 3), item(POWER, 9)])
    assert spool.backlog == 3
    assert spool.oldest_time_ms() == 1_700_000_003_000
    for rec in drain(spool):
        if rec.kind == JOB:
            spool.ack(rec.kind, rec.seq)
    assert spool.oldest_time_ms() == 1_700_000_005_000 and spool.backlog == 2
    spool.close()


def test_one_spool_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolBusy, match="in use by another agent"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


# kinds and sizes of appended batches, and which of the records read are acknowledged
OPS = st.lists(st.tuples(st.lists(st.sampled_from([CAPACITY, JOB, POWER]), min_size=1, max_size=8),
                         st.floats(0, 1), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_property_every_unacked_record_is_replayed_after_a_crash(tmp_path_factory: pytest.TempPathFactory,
                                                                 ops: list[tuple[list[int], float, bool]]) -> None:
    path = tmp_path_factory.mktemp("spool")
    spool = Spool(path, segment_bytes=4096, fsync="never")
    values: dict[bytes, int] = {}
    acked: set[bytes] = set()
    n = 0
    for kinds, ack_share, save in ops:
        batch = [item(k, (n := n + 1)) for k in kinds]
        spool.append(batch)
        values.update({i[3]: i[0] for i in batch})
        read = spool.read(len(batch) + 3)
        for rec in read[: int(len(read) * ack_share)]:
            spool.ack(rec.kind, rec.seq)
            acked.add(rec.value)
        if save:
            spool.save_cursor()
    spool.save_cursor()
    os.close(spool._lock)  # killed: no close()
    again = Spool(path, segment_bytes=4096)
    replayed = drain(again)
    got = [r.value for r in replayed]
    assert len(got) == len(set(got))
    assert set(values) - acked <= set(got) <= set(values)  # acked-out-of-order may come again
    for kind in (JOB, CAPACITY):
        seqs = [r.seq for r in replayed if (r.kind == JOB) == (kind == JOB)]
        assert seqs == sorted(seqs)
    again.close()


def test_seeks_into_a_big_segment_use_marks(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([item(POWER, n) for n in range(1000)])
    sent = drain(spool)
    for rec in sent[:777]:
        spool.ack(rec.kind, rec.seq)
    assert spool.oldest_time_ms() == 1_700_000_000_000 + 777 * 1000
    assert len(spool.telemetry.segments[0].marks) == 16  # one per 64 records
    spool.rewind()
    assert [r.seq for r in drain(spool)] == list(range(777, 1000))
    spool.close()
    again = Spool(tmp_path)
    assert [r.seq for r in drain(again)] == list(range(777, 1000))
    assert again.oldest_time_ms() == 1_700_000_000_000 + 777 * 1000
    again.close()
